"""Windows on the pipeline path: at most a window's frames per call, whatever the output's length; each window
after the first starts from frames made or known before it (frame 0 of every window known); ``extend`` hands
the pipeline its last frames only; a fixed-size model (CogVideoX-5B-I2V's learned positional embeddings) runs
at exactly its size and frame count. Tiny random pipelines built in code, on the CPU."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from motionguide import jobs, pipeline_job, testing
from motionguide.guidance import Guidance
from motionguide.pipeline_job import _plan, run_pipeline, window_context, window_frames

torch.set_flush_denormal(True)


def _clip(n: int, h: int = 32, w: int = 48, seed: int = 0) -> torch.Tensor:
    """``n`` frames of a smooth picture moving right 1 px a frame, ``(n, 3, h, w)``."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(h + 8, w + 2 * n + 8), mode="bicubic",
                         align_corners=False).clamp(0, 1)[0]
    return torch.stack([base[:, 4:4 + h, n + 4 - k: n + 4 - k + w] for k in range(n)])


@pytest.fixture(scope="module")
def wan():
    return testing.tiny_pipeline("wan")


@pytest.fixture
def calls(monkeypatch):
    """Every window's guidance as ``generate_with_guidance`` receives it, and what the pipeline made for it."""
    seen, real = [], pipeline_job.generate_with_guidance

    def spy(pipe, g, **kw):
        out = real(pipe, g, **kw)
        seen.append((g, pipeline_job._frames_of(out)))
        return out

    monkeypatch.setattr(pipeline_job, "generate_with_guidance", spy)
    return seen


def test_the_transformer_never_sees_more_than_a_window_and_windows_carry_context(wan, calls):
    clip = _clip(6)
    res = jobs.extend(clip, 20, model=None, mode="flow_only")  # 26 output frames at 48x32
    latent_frames = []
    hook = wan.transformer.register_forward_pre_hook(
        lambda m, a, k: latent_frames.append((k.get("hidden_states", a[0] if a else None)).shape[2]), with_kwargs=True)
    try:
        made = run_pipeline(wan, res.guidance, frames=9, steps=1, prompt="", guidance_scale=1.0)
    finally:
        hook.remove()
    assert made.shape == (26, 3, 32, 48)
    assert latent_frames and max(latent_frames) <= 3  # 9 frames = 3 latent frames (4k+1, 4x in time)
    assert window_frames(wan, 9) == 9 and window_context(wan, 9) == 5
    # extend: the first call gets the last 5 input frames (frames 1..5), not the whole input, and no more
    first = calls[0][0]
    assert first.positions[:5] == (0, 1, 2, 3, 4) and first.frames.shape[2] == 5
    assert torch.equal(first.frames[0].transpose(0, 1), clip[1:6])
    starts = [1, 5, 9, 13, 17]  # 1..9, 5..13, ..., 17..25: 5 frames before the first frame still to make
    assert len(calls) == len(starts)
    first_made = {}  # output frame -> what the first window that covers it made
    for (g, out), s in zip(calls, starts):
        assert g.num_frames == 9 and 0 in g.positions  # frame 0 of every window is known
        # flat in the output's length: the window's known frames and the one frame extend's flows sample
        assert g.frames.shape[2] <= 6 and torch.equal(g.frames[0, :, g.sources[8, 0]], clip[5])
        for j in range(5):  # the context: input frames, or what an earlier window made for those frames
            want = clip[s + j] if s + j < 6 else first_made[s + j]
            assert torch.equal(g.frames[0, :, g.positions.index(j)], want)
        for j in range(min(9, 26 - s)):
            first_made.setdefault(s + j, out[j])
    assert all(torch.equal(made[t], f) for t, f in first_made.items())  # the output: each frame's first making
    # each output frame is the pipeline's from the first window that made it
    assert torch.equal(made[6:10], calls[0][1][5:9])
    assert torch.equal(made[10:14], calls[1][1][5:9])
    assert torch.equal(made[0], clip[0])  # a frame no window covers: the input's


def test_one_window_is_padded_to_the_vae_count_and_cut_back(wan, calls, capsys):
    res = jobs.speed(_clip(3), 0.5, model=None, mode="flow_only", interpolator="dis")  # 5 frames
    made = run_pipeline(wan, res.guidance, steps=1, prompt="", guidance_scale=1.0)
    assert made.shape == (5, 3, 32, 48) and len(calls) == 1 and calls[0][0].num_frames == 5
    res = jobs.speed(_clip(4), 0.5, model=None, mode="flow_only", interpolator="dis")  # 7 frames -> one call of 9
    made = run_pipeline(wan, res.guidance, steps=1, prompt="", guidance_scale=1.0)
    assert made.shape == (7, 3, 32, 48) and calls[1][0].num_frames == 9
    assert "the last call runs 2 free frames past the end, cut back" in capsys.readouterr().err


def test_window_plan():
    ok = [5, 9, 13, 17]
    assert _plan(ok, 7, 1, 5, None) == (0, 9)  # the shortest that reaches the end
    assert _plan(ok, 40, 1, 5, None) == (0, 17)  # else the longest
    assert _plan(ok, 40, 20, 5, None) == (15, 17)  # starting 5 frames before the first frame to make
    # first-last-frame models: the longest that ends on a known frame past the first missing one
    assert _plan(ok, 40, 1, 5, {0, 2, 4, 8, 12}) == (0, 13)
    assert _plan(ok, 40, 4, 5, {3, 11}) == (3, 9)
    assert _plan(ok, 40, 4, 5, {0, 1, 2, 3}) == (0, 17)  # none in reach: the default (the call says what it needs)


def test_first_last_frame_windows_end_on_known_frames(calls):
    flf = testing.tiny_pipeline("wan", image_encoder=True, last_image=True)
    res = jobs.speed(_clip(6), 0.5, model=None, mode="flow_only", interpolator="dis")  # 11 frames, even ones known
    made = run_pipeline(flf, res.guidance, frames=9, steps=1, prompt="", guidance_scale=1.0)
    assert made.shape == (11, 3, 32, 48)
    assert [(g.num_frames, g.positions[:1]) for g, _ in calls] == [(9, (0,)), (9, (0,))]  # frames 0..8, 2..10
    for g, _ in calls:
        assert g.num_frames - 1 in g.positions  # its last image is a known frame
    with pytest.raises(ValueError, match="FLF2V transformer"):  # extend knows no last frame
        run_pipeline(flf, jobs.extend(_clip(3), 2, model=None, mode="flow_only").guidance, frames=9, steps=1)


def test_compact_keeps_the_frames_a_window_uses():
    clip = _clip(12)
    g = jobs.extend(clip, 4, model=None, mode="flow_only").guidance  # 12 known frames, 16 output frames
    w = g.window(7, 9)
    c = w.compacted()
    assert w.frames.shape[2] == 12 and c.frames.shape[2] == 5  # frames 7..11
    assert c.positions == (0, 1, 2, 3, 4)
    assert torch.equal(c.frames, w.frames[:, :, 7:])
    assert c.sources[5:, 0].tolist() == [4] * 4  # the new frames warp the last input frame, renumbered
    assert torch.equal(c.flows, w.flows) and torch.equal(c.weights, w.weights)


def test_pipeline_frames_follow_the_vae_rule(wan):
    assert window_frames(wan) == 81  # Wan's native count
    with pytest.raises(ValueError, match=r"frames=7: WanImageToVideoPipeline takes 4k\+1 frames per call "
                                         r"\(its VAE\), at least 5; use 5 or 9"):
        window_frames(wan, 7)
    g = Guidance(torch.rand(1, 3, 1, 32, 32), (1,), 4, torch.full((4, 1), -1, dtype=torch.long),
                 torch.zeros(1, 4, 1, 2, 32, 32), torch.zeros(1, 4, 1, 1, 32, 32))
    with pytest.raises(ValueError, match="frame 0 is not known"):
        run_pipeline(wan, g, steps=1)


@pytest.fixture(scope="module")
def cog5b():
    return testing.tiny_pipeline("cogvideox", fixed_size=True)  # 48x32 (WxH) and 9 frames only


def test_a_fixed_size_model_runs_at_its_size_and_frame_count(cog5b, calls, capsys):
    nat = pipeline_job.native_shape(cog5b)
    assert (nat.height, nat.width, nat.frames, nat.fixed) == (32, 48, 9, True)
    clip = _clip(3, 64, 64)  # another aspect ratio: fitted to 48x32, the output resized back
    res = jobs.speed(clip, 0.5, model=None, mode="flow_only", interpolator="dis")  # 5 frames
    out = jobs.pipeline_job(cog5b, res, steps=1, prompt="", guidance_scale=1.0)
    err = capsys.readouterr().err
    assert "runs at 48x32 (WxH; its learned positional embeddings take no other size" in err
    assert out.frames.shape == (5, 3, 64, 64) and torch.equal(out.frames[0::2], clip)
    assert [(g.num_frames, *g.size) for g, _ in calls] == [(9, 32, 48)]  # padded to its 9 frames, cut back
    res = jobs.extend(clip, 10, model=None, mode="flow_only")  # 13 frames: frames 0..8, then 4..12
    out = jobs.pipeline_job(cog5b, res, output_size="model", composite="off", steps=1, prompt="", guidance_scale=1.0)
    assert out.frames.shape == (13, 3, 32, 48) and out.confidence is None and out.model_share == 1.0
    assert [(g.num_frames, *g.size) for g, _ in calls[1:]] == [(9, 32, 48)] * 2
    # composite off: the pipeline's own frames, the known ones as it made them
    assert torch.equal(out.frames[:9], calls[1][1]) and torch.equal(out.frames[9:], calls[2][1][5:])
    assert not torch.equal(out.frames[:3], F.interpolate(clip, size=(32, 48), mode="area"))
    with pytest.raises(ValueError, match="has learned positional embeddings and runs at 48x32 only"):
        jobs.pipeline_size(cog5b, (64, 64), (32, 32))
    with pytest.raises(ValueError, match="makes 9 frames per call only"):
        window_frames(cog5b, 5)


@pytest.mark.parametrize("arch", ["ltx", "wan-t2v"])
def test_other_families_run_in_windows(arch, calls):
    pipe = testing.tiny_pipeline(arch)
    clip = _clip(4, 32, 32)
    made = run_pipeline(pipe, jobs.extend(clip, 8, model=None, mode="flow_only").guidance, frames=9, steps=1,
                        prompt="", guidance_scale=1.0)
    assert made.shape == (12, 3, 32, 32)
    assert all(g.num_frames == 9 for g, _ in calls)  # LTX: 8k+1, Wan: 4k+1
    # a 9-frame LTX window (8x in time) carries its conditioning frame only: one call, frames 3..11; Wan T2V
    # carries 5: frames 0..8, then 4..12 (one free frame past the end)
    assert window_context(pipe, 9) == (1 if arch == "ltx" else 5)
    assert len(calls) == (1 if arch == "ltx" else 2) and all(0 in g.positions for g, _ in calls)


def test_wan21_i2v_with_clip_runs_a_window_that_ends_on_a_known_frame(calls):
    """Wan 2.1 I2V (CLIP, not FLF2V) embeds one image: a window whose last frame is known gets no last_image."""
    pipe = testing.tiny_pipeline("wan", image_encoder=True)
    made = run_pipeline(pipe, jobs.speed(_clip(3), 0.5, model=None, mode="flow_only", interpolator="dis").guidance,
                        steps=1, prompt="", guidance_scale=1.0)
    assert made.shape == (5, 3, 32, 48) and calls[0][0].num_frames == 5 and 4 in calls[0][0].positions
