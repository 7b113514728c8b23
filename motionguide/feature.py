"""Feature-level guidance (MoG): warp source-frame tokens to the target frames inside the first blocks.

After each hooked block, its video tokens are viewed as ``(B, F', R, C, D)`` (frames, rows, cols of
patches), the tokens of each target frame's source frame(s) are backward-warped with the guidance flow at
token resolution, and blended in by a gate:

    ``h_target <- h_target + g * sum_k w_k * (warp(h_source_k, F_k) - h_target)``

``g = strength * gate`` with a learnable per-channel ``gate`` initialised to zero (trained mode: an
untrained adapter is an exact no-op) or ``g = strength`` (training-free mode). MoG injects in the encoder
half only so the later layers can correct flow errors; for transformers the default is the first half of
the blocks. Hooks are named ``diffusers.hooks`` hooks (no subclassing, exact removal); the guidance reaches
them through the shared :class:`~motionguide.latent.GuidanceState`, not ``attention_kwargs`` (Wan, LTX and
HunyuanVideo do not pass those to their blocks).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.hooks import ModelHook

from flow.warp import backward_warp_many, resize_flow

from .latent import GuidanceState, LatentGuidance, repeat_batch

__all__ = ["FEATURE_HOOK", "TokenPairs", "token_pairs", "FeatureGuidanceHook", "blend_tokens"]

FEATURE_HOOK = "motionguide_feature"


@dataclass
class TokenPairs:
    """Target/source token-frame pairs with their token-resolution flows (P pairs), for a batch of B.

    ``tgt, src: (P,)`` long token-frame indices (on the CPU: only read into Python lists, here, once);
    ``flow: (B*P, 2, R, C)`` float32 token cells;
    ``weight: (B, P, R, C, 1)`` float32. Built once per guidance (``set_guidance``); the Python index lists
    derived here (pair groups per target and per source) are what a forward loops over, so a forward reads
    no tensor value on the host.
    """

    tgt: torch.Tensor
    src: torch.Tensor
    flow: torch.Tensor
    weight: torch.Tensor

    def __post_init__(self) -> None:
        self.batch = self.weight.shape[0]
        self.weight_cf = self.weight.permute(0, 1, 4, 2, 3)                   # (B, P, 1, R, C)
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(self.tgt.cpu().tolist()):
            groups.setdefault(t, []).append(i)
        self.groups = [(t, idx) for t, idx in groups.items()]
        self.wsum_cf = {t: self.weight_cf[:, idx].sum(1) for t, idx in self.groups}  # (B, 1, R, C)
        # per distinct source frame, its pairs: each source is warped once for all of its targets
        by_src: dict[int, list[int]] = {}
        for i, sf in enumerate(self.src.cpu().tolist()):
            by_src.setdefault(sf, []).append(i)
        self.by_source = list(by_src.items())
        order = [i for _, idx in self.by_source for i in idx]
        self.sorted = order == list(range(len(order)))
        self.unsort = torch.argsort(torch.tensor(order, device=self.flow.device))

    def to(self, device: torch.device) -> "TokenPairs":
        return TokenPairs(self.tgt, self.src, self.flow.to(device), self.weight.to(device))


def token_pairs(guidance: LatentGuidance, token_grid: tuple[int, int, int], pt: int, batch: int | None = None,
                device: torch.device | None = None) -> TokenPairs | None:
    """Active (target, source) token-frame pairs of ``guidance`` on a ``(F', R, C)`` token grid.

    A token frame covers ``pt`` latent frames; it takes the guidance of the last of them. Pairs whose source
    is the target itself (known frames) or is not in the clip (-1) are dropped. Flows are resized to the
    token grid with magnitudes rescaled; weights are area-averaged. ``batch`` (default: the guidance's)
    repeats them to a model batch; ``device`` defaults to the guidance's. Returns None when no pair is active.
    """
    fp, r, c = token_grid
    f = guidance.grid[0]
    gb = guidance.flows.shape[0]
    batch = gb if batch is None else batch
    device = guidance.flows.device if device is None else device
    if batch % gb:
        raise ValueError(f"guidance batch {gb} does not divide the model batch {batch}")
    tgt, src, flows, weights = [], [], [], []
    sources = guidance.sources.cpu()
    for ft in range(fp):
        lf = min(ft * pt + pt - 1, f - 1)
        for k in range(sources.shape[1]):
            s = int(sources[lf, k])
            if s < 0 or s // pt == ft:
                continue
            tgt.append(ft)
            src.append(s // pt)
            flows.append(resize_flow(guidance.flows[:, lf, k].float(), (r, c)))
            wt = guidance.weights[:, lf, k].float()
            weights.append(F.interpolate(wt, size=(r, c), mode="area") if wt.shape[-2:] != (r, c) else wt)
    if not tgt:
        return None
    reps = batch // gb
    flow = torch.stack(flows, 1).repeat(reps, 1, 1, 1, 1).to(device)           # (B, P, 2, R, C)
    weight = torch.stack(weights, 1).repeat(reps, 1, 1, 1, 1).to(device)       # (B, P, 1, R, C)
    return TokenPairs(
        tgt=torch.tensor(tgt, dtype=torch.long),
        src=torch.tensor(src, dtype=torch.long),
        flow=flow.flatten(0, 1),
        weight=weight.permute(0, 1, 3, 4, 2),
    )


def blend_tokens(h5: torch.Tensor, pairs: TokenPairs, gate: torch.Tensor | float, *, inplace: bool = False) -> torch.Tensor:
    """``h5: (B, F', R, C, D)`` -> tokens with warped source tokens blended into the targets.

    For each target frame: ``h + gate * (sum_k w_k warp(src_k) - (sum_k w_k) h)``. ``gate``: a float, a 0-d
    tensor or a ``(D,)`` per-channel tensor. ``B`` may be a multiple of the pairs' batch (CFG doubles it).
    On large models the cost of this hook is memory traffic, not arithmetic, so each source frame is warped
    once for all the targets it serves (:func:`flow.warp.backward_warp_many`), and the rest works in place
    on those temporaries; with ``inplace`` (inference, no other hook on the block) it also updates ``h5``
    itself instead of a copy. Warping runs in float32 (bf16 sampling coordinates would be off by up to half
    a token).
    """
    b, _, r, c, d = h5.shape
    p = pairs.tgt.numel()
    flows = repeat_batch(pairs.flow.view(pairs.batch, p, 2, r, c), b)
    weight_cf = repeat_batch(pairs.weight_cf, b)
    h_cf = h5.permute(0, 1, 4, 2, 3)  # (B, F', D, R, C) view
    # each distinct source frame enters grid_sample once for all its pairs, so autograd keeps one float
    # copy per source frame, not one per (target, source) pair
    parts = [backward_warp_many(h_cf[:, sf].float(), flows[:, idx]) for sf, idx in pairs.by_source]
    warped = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    if not pairs.sorted:
        warped = warped[:, pairs.unsort]
    warped = warped.mul_(weight_cf)  # neither grid_sample's nor cat's backward needs this output
    out = h5 if inplace else h5.clone()
    out_cf = out.permute(0, 1, 4, 2, 3)                                           # (B, F', D, R, C) view
    gate_cf = gate.view(1, -1, 1, 1) if isinstance(gate, torch.Tensor) else gate
    grad = torch.is_grad_enabled()
    for t, idx in pairs.groups:
        acc = warped[:, idx[0]]                                                   # (B, D, R, C)
        for i in idx[1:]:
            acc = acc + warped[:, i] if grad else acc.add_(warped[:, i])
        h_t = out_cf[:, t]
        wsum = repeat_batch(pairs.wsum_cf[t], b)
        if grad:  # out of place: autograd needs the operands of the gate product
            upd = torch.addcmul(acc, wsum, h_t.float(), value=-1.0) * gate_cf
        else:
            upd = acc.addcmul_(wsum, h_t.float(), value=-1.0).mul_(gate_cf)
        h_t += upd.to(h5.dtype)  # writes through the view into out (CopySlices under autograd)
    return out


class FeatureGuidanceHook(ModelHook):
    """Post-forward hook on one transformer block: blends warped source tokens into the block output.

    Args:
        state: the transformer's shared :class:`GuidanceState` (its ``pairs`` are built by ``set_guidance``).
        gate: ``(D,)`` learnable parameter (trained mode) or None (training-free: the gate is ``strength``).
        block_layout: ``b(fhw)d`` or ``(bf)(hw)d`` (see :class:`~motionguide.registry.ArchSpec`).
        tuple_output: the block returns a tuple whose item 0 holds the video tokens.
        pt: temporal patch size.
    """

    _is_stateful = False

    def __init__(self, state: GuidanceState, gate: torch.nn.Parameter | None, block_layout: str,
                 tuple_output: bool, pt: int) -> None:
        super().__init__()
        self.state, self.gate, self.block_layout, self.tuple_output, self.pt = state, gate, block_layout, tuple_output, pt

    def post_forward(self, module: torch.nn.Module, output):
        st = self.state
        pairs = st.pairs
        if pairs is None or st.strength == 0 or st.active is False or st.token_grid is None:
            return output  # no (feature) guidance, strength 0, or a block called outside the transformer's forward
        hs = output[0] if self.tuple_output else output
        fp, r, c = st.token_grid
        lead = None
        if st.prefix and self.block_layout == "b(fhw)d" and hs.ndim == 3:
            lead, hs = hs[:, :st.prefix], hs[:, st.prefix:]  # condition tokens before the video's stay as they are
        if self.block_layout == "b(fhw)d":
            if hs.ndim != 3 or hs.shape[1] != fp * r * c:
                raise ValueError(f"feature guidance: block output {tuple(hs.shape)} does not hold {fp}x{r}x{c} video tokens")
            b = hs.shape[0]
        else:
            if hs.ndim != 3 or hs.shape[0] % fp or hs.shape[1] != r * c:
                raise ValueError(f"feature guidance: block output {tuple(hs.shape)} is not (B*{fp}, {r * c}, D)")
            b = hs.shape[0] // fp
        if pairs.flow.device != hs.device:  # guidance set for another device: follow the activations once
            pairs = st.pairs = pairs.to(hs.device)
        scale = st.scale(hs)
        # the gate rests with the model's weights (the CPU under offload) and comes to the activations
        gate = scale if self.gate is None else scale * self.gate.to(hs.device).float()
        # in place only at inference and when no other hook (e.g. a cache) may hold this output
        reg = getattr(module, "_diffusers_hook", None)
        inplace = (lead is None and not torch.is_grad_enabled() and reg is not None and len(reg.hooks) == 1
                   and hs.is_contiguous())
        new = blend_tokens(hs.view(b, fp, r, c, hs.shape[-1]) if inplace else hs.reshape(b, fp, r, c, hs.shape[-1]),
                           pairs, gate, inplace=inplace).reshape(hs.shape)
        if lead is not None:
            new = torch.cat([lead, new], 1)
        return (new, *output[1:]) if self.tuple_output else new
