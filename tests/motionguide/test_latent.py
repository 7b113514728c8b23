"""Latent-level guidance: the contract type, the pixel -> latent mapping (exact on a constructed case),
and the training-free re-noised pull."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from motionguide.guidance import Guidance
from motionguide.latent import LatentGuidance, LatentPull, latent_guidance, pack_guidance_input
from motionguide.registry import VAECompression

WAN = VAECompression(8, 4, True)


def smooth_latent(x_shift: float, h: int = 16, w: int = 12, c: int = 4) -> torch.Tensor:
    """(1, C, h, w) analytic field f(x - x_shift, y): a latent image translated right by x_shift cells."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    chans = [torch.sin(0.35 * (xs - x_shift) + i) + torch.cos(0.3 * ys + 2 * i) for i in range(c)]
    return torch.stack(chans)[None].float()


def translating_guidance(step_px: float, num_frames: int = 9, size=(128, 96)) -> Guidance:
    """Pixel guidance: frame 0 known; frame p = frame 0 moved right by step_px * p (backward flow -step_px*p)."""
    h, w = size
    flows = torch.zeros(1, num_frames, 1, 2, h, w)
    for p in range(num_frames):
        flows[:, p, 0, 0] = -step_px * p
    return Guidance(torch.rand(1, 3, 1, h, w), (0,), num_frames, torch.zeros(num_frames, 1, dtype=torch.long),
                    flows, torch.ones(1, num_frames, 1, 1, h, w))


def test_mapping_reproduces_translated_latents():
    """A latent clip made by translating a latent image is reproduced by warping with the mapped flow."""
    g = translating_guidance(3.0)                     # 3 px/frame; latent j shows pixel frame 4j: 1.5 j cells
    lg = latent_guidance(g, smooth_latent(0.0)[:, :, None], vae=WAN)
    assert lg.grid == (3, 16, 12) and lg.sources[:, 0].tolist() == [0, 0, 0]
    for j in range(3):
        assert torch.allclose(lg.flows[0, j, 0, 0], torch.full((16, 12), -1.5 * j))
        truth = smooth_latent(1.5 * j)[0]
        got = lg.latents[0, :, j]
        inner = (slice(None), slice(None), slice(math.ceil(1.5 * j), None))  # border padding left of the shift
        tol = 1e-5 if (1.5 * j).is_integer() else 0.02  # bilinear interpolation error of a smooth field
        assert (got[inner] - truth[inner]).abs().max() < tol, j
    assert torch.equal(lg.latents[0, :, 0], smooth_latent(0.0)[0])  # the known frame is its own latent, bit-exact
    assert torch.equal(lg.mask, torch.ones_like(lg.mask))


def test_mapping_time_rules():
    g = translating_guidance(8.0)
    mean = latent_guidance(g, torch.zeros(1, 4, 1, 16, 12), vae=WAN, temporal="mean")
    # latent 1 covers pixel frames 1..4: mean displacement 2.5 frames * 8 px / 8 = 2.5 cells
    assert torch.allclose(mean.flows[0, 1, 0, 0], torch.full((16, 12), -2.5))
    ident = latent_guidance(g, torch.zeros(1, 4, 1, 128, 96), vae=VAECompression(1, 1, False))
    assert ident.grid == (9, 128, 96) and torch.equal(ident.flows[:, :, :, :], g.flows)
    with pytest.raises(ValueError, match="4k\\+1 frames.*use 9 or 13"):
        latent_guidance(translating_guidance(1.0, num_frames=10), torch.zeros(1, 4, 1, 16, 12), vae=WAN)
    with pytest.raises(ValueError, match="8k\\+1.*use 9 or 17"):
        latent_guidance(translating_guidance(1.0, num_frames=12, size=(64, 64)), torch.zeros(1, 4, 1, 2, 2),
                        vae=VAECompression(32, 8, True))
    with pytest.raises(ValueError, match="multiples of 8"):
        latent_guidance(translating_guidance(1.0, size=(60, 64)), torch.zeros(1, 4, 1, 7, 8), vae=WAN)
    with pytest.raises(ValueError, match="does not match frames"):
        latent_guidance(g, torch.zeros(1, 4, 1, 8, 8), vae=WAN)
    with pytest.raises(ValueError, match="not encoded"):
        latent_guidance(g, vae=WAN)


def test_known_frame_clip_index():
    """Known frames that are a latent frame's representative feed the feature level; others only latents."""
    h, w = 64, 64
    n = 9
    sources = torch.tensor([[0, -1]] + [[0, 1]] * 7 + [[1, -1]])
    flows = torch.zeros(1, n, 2, 2, h, w)
    weights = torch.zeros(1, n, 2, 1, h, w)
    weights[:, 0, 0] = weights[:, 8, 0] = 1
    weights[:, 1:8, 0] = weights[:, 1:8, 1] = 0.5
    g = Guidance(torch.rand(1, 3, 2, h, w), (0, 8), n, sources, flows, weights)
    a, b = torch.randn(1, 4, 1, 8, 8), torch.randn(1, 4, 1, 8, 8)
    lg = latent_guidance(g, torch.cat([a, b], 2), vae=WAN)
    assert lg.sources.tolist() == [[0, -1], [0, 2], [2, -1]]  # pixel 8 is latent 2 (4k rule), 0 is latent 0
    assert torch.equal(lg.latents[:, :, 2], b[:, :, 0]) and torch.equal(lg.latents[:, :, 0], a[:, :, 0])
    assert torch.allclose(lg.latents[:, :, 1], 0.5 * (a + b)[:, :, 0])
    g5 = Guidance(g.frames, (0, 5), n, sources, flows, weights)
    assert latent_guidance(g5, torch.cat([a, b], 2), vae=WAN).sources.tolist()[2] == [-1, -1]  # 5 is not latent 2's last


def test_latent_guidance_validation():
    lt, m = torch.zeros(1, 4, 3, 8, 8), torch.ones(1, 1, 3, 8, 8)
    LatentGuidance(lt, m)
    with pytest.raises(ValueError, match=r"mask: expected \(B, 1, F, h, w\)"):
        LatentGuidance(lt, torch.ones(1, 1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"mask: expected values in \[0, 1\]"):
        LatentGuidance(lt, m * 2)
    bad = lt.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LatentGuidance(bad, m)
    with pytest.raises(ValueError, match="go together"):
        LatentGuidance(lt, m, sources=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="flows: expected"):
        LatentGuidance(lt, m, torch.zeros(3, 1, dtype=torch.long), torch.zeros(1, 3, 1, 2, 8, 7), torch.ones(1, 3, 1, 1, 8, 8))
    with pytest.raises(ValueError, match="strength"):
        LatentGuidance(lt, m, strength=3)


def test_pack_guidance_input_orders():
    x = torch.arange(2 * 3 * 2 * 4 * 4, dtype=torch.float32).view(2, 3, 2, 4, 4)
    assert torch.equal(pack_guidance_input(x, "conv3d", (1, 2, 2)), x)
    assert torch.equal(pack_guidance_input(x, "conv2d_frames", (1, 2, 2))[3], x[1, :, 1])
    tok = pack_guidance_input(x, "linear_tokens", (1, 1, 1))
    assert tok.shape == (2, 32, 3) and torch.equal(tok[1, 16 + 5], x[1, :, 1, 1, 1])  # token (f=1, y=1, x=1)
    pt = pack_guidance_input(x, "linear_patches", (2, 2, 2))
    assert pt.shape == (2, 4, 24)


class _Pipe(SimpleNamespace):
    pass


@pytest.mark.parametrize("sched_name", ["FlowMatchEulerDiscreteScheduler", "DDIMScheduler"])
def test_latent_pull(sched_name):
    import diffusers

    sched = getattr(diffusers, sched_name)()
    sched.set_timesteps(10)
    pipe = _Pipe(scheduler=sched, num_timesteps=10)
    lt = torch.randn(1, 4, 3, 8, 8)
    mask = torch.zeros(1, 1, 3, 8, 8)
    mask[:, :, 1:] = 1
    pull = LatentPull(LatentGuidance(lt, mask), strength=1.0, steps=(0.0, 0.4), generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 3, 8, 8)
    out = pull(pipe, 0, sched.timesteps[0], {"latents": x.clone()})["latents"]
    assert torch.equal(out[:, :, 0], x[:, :, 0])  # outside the mask: untouched
    def renoised(noise):
        if sched_name.startswith("FlowMatch"):
            s = float(sched.sigmas[1])
            return (1 - s) * lt + s * noise
        return sched.add_noise(lt, noise, sched.timesteps[1:2])

    assert torch.allclose(out[:, :, 1:], renoised(pull._noise)[:, :, 1:], atol=1e-6)
    late = pull(pipe, 5, sched.timesteps[5], {"latents": x.clone()})["latents"]
    assert torch.equal(late, x)  # step 5 of 10 is past the early-steps window
    half = LatentPull(LatentGuidance(lt, mask), strength=0.5)
    h = half(pipe, 0, None, {"latents": x.clone()})["latents"]
    assert torch.allclose(h[:, :, 1:], (0.5 * x + 0.5 * renoised(half._noise))[:, :, 1:], atol=1e-6)
    # the same pull on CogVideoX's (B, F, C, H, W) layout moves the same numbers
    cog = LatentPull(LatentGuidance(lt, mask), layout="bfchw", strength=1.0, generator=torch.Generator().manual_seed(0))
    out_c = cog(pipe, 0, None, {"latents": x.transpose(1, 2).clone()})["latents"]
    assert torch.allclose(out_c.transpose(1, 2), out, atol=1e-6)
    with pytest.raises(ValueError, match="do not match the pipeline latents"):
        pull(pipe, 0, None, {"latents": torch.randn(1, 4, 5, 8, 8)})
    with pytest.raises(ValueError, match="steps"):
        LatentPull(LatentGuidance(lt, mask), steps=(0.5, 0.2))
    with pytest.raises(ValueError, match="cannot re-noise"):
        pull(_Pipe(scheduler=object(), num_timesteps=10), 0, None, {"latents": x.clone()})
