"""The trainer's parts, checked by hand or against the pipelines' own code.

* Wan's condition tensors equal what ``WanImageToVideoPipeline.prepare_latents`` builds (I2V and FLF2V);
  CogVideoX's and LTX's clip latents use the pipeline's own normalisation.
* The flow-matching noise levels follow the scheduler's shift; the frames are fitted by cover + center crop;
  clips are spread over the videos long enough for them.
* Trained blocks save and load with the adapter, and removal restores the pretrained values exactly; an
  adapter whose ``pipeline.json`` names another transformer config is refused before the model changes.
"""
from __future__ import annotations

import json

import pytest
import torch

import motionguide as mg
from motionguide import testing
from motionguide.adapter_weights import PIPELINE_MANIFEST, train_blocks
from motionguide.errors import UserError
from motionguide.finetune.objectives import flow_sigmas, make_objective
from motionguide.finetune.recipe import transformer_config
from motionguide.finetune.videos import ClipSpec, VideoInfo, fit_frame, plan_clips

torch.set_flush_denormal(True)


@pytest.fixture(scope="module")
def wan():
    return testing.tiny_pipeline("wan")


@pytest.mark.parametrize("ends", [False, True])
def test_wan_conditions_equal_the_pipelines_prepare_latents(wan, ends):
    clip = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0))
    obj = make_objective(wan, "wan", height=32, width=32, num_frames=9)
    got = obj.encode_clip(clip, {"ends" if ends else "first"}, torch.device("cpu"))
    x = clip * 2 - 1
    with torch.no_grad():
        _, want = wan.prepare_latents(x[:, :, 0], 1, 16, 32, 32, 9, torch.float32, torch.device("cpu"), None, None,
                                      x[:, :, -1] if ends else None)
    assert torch.allclose(got["cond.ends" if ends else "cond.first"], want, atol=1e-6)
    assert got["x0"].shape == (1, 16, 3, 4, 4)


def test_flow_sigmas_follow_the_schedulers_shift():
    u = torch.tensor([0.25, 0.5, 0.75])
    assert torch.allclose(flow_sigmas({"shift": 1.0}, u, 100), u)
    assert torch.allclose(flow_sigmas({"shift": 3.0}, u, 100), 3 * u / (1 + 2 * u))
    assert torch.allclose(flow_sigmas({"flow_shift": 3.0, "use_flow_sigmas": True}, u, 100), 3 * u / (1 + 2 * u))
    lo = flow_sigmas({"use_dynamic_shifting": True}, u, 256)   # mu = base_shift 0.5
    hi = flow_sigmas({"use_dynamic_shifting": True}, u, 4096)  # mu = max_shift 1.15: more noise
    assert torch.allclose(lo, 1.6487 / (1.6487 + (1 / u - 1)), atol=1e-4) and bool((hi > lo).all())


def test_fit_frame_covers_and_center_crops():
    f = torch.zeros(3, 20, 40)
    f[:, :, 10:30] = 1.0  # a bright middle half: the 1:1 crop of a 2:1 frame keeps just it
    out = fit_frame(f, (10, 10))
    assert out.shape == (3, 10, 10) and float(out.mean()) > 0.95  # squashed instead, it would be half dark
    assert torch.allclose(out[:, :, 1:-1], torch.ones(3, 10, 8), atol=1e-5)  # the edges: antialiasing
    assert fit_frame(torch.rand(3, 4, 6), (8, 8)).shape == (3, 8, 8)  # smaller: upscaled to cover


def test_clips_are_spread_over_the_videos_long_enough():
    vids = [VideoInfo(f"/v/{n}.mp4", 1, 1, 64, 64, n, 10.0) for n in (100, 5, 50)]
    notes = []
    specs = plan_clips(vids, frames=9, stride=2, clips=4, notice=notes.append)
    assert len(specs) == 4 and {s.video.num_frames for s in specs} == {100, 50}
    assert all(s.indices[-1] < s.video.num_frames and s.indices[1] - s.indices[0] == 2 for s in specs)
    assert notes and "5.mp4" in notes[0]
    first100 = [s for s in specs if s.video.num_frames == 100]
    assert first100[0].indices[0] == 0 and first100[-1].indices[-1] >= 90  # spread to both ends
    with pytest.raises(UserError, match="the longest, 100.mp4, has 100 frames"):
        plan_clips(vids, frames=200, stride=1, clips=1, notice=notes.append)
    assert isinstance(specs[0], ClipSpec)


def test_held_out_clips_share_no_frame_with_training_clips():
    """The held-out clips sit at the end of the last videos, past every training window of their video, even
    when one video holds more windows than fit side by side."""
    one = [VideoInfo("/v/one.mp4", 1, 1, 64, 64, 40, 16.0)]
    for clips, held in ((6, 1), (3, 2), (1, 1)):
        specs = plan_clips(one, frames=9, stride=1, clips=clips + held, notice=lambda m: None, held=held)
        train, out = specs[:clips], specs[clips:]
        assert len(train) == clips and len(out) == held
        assert not {i for s in train for i in s.indices} & {i for s in out for i in s.indices}
        assert len({i for s in out for i in s.indices}) == 9 * held  # held-out clips share none either
    two = one + [VideoInfo("/v/two.mp4", 1, 1, 64, 64, 30, 16.0)]
    specs = plan_clips(two, frames=9, stride=1, clips=5, notice=lambda m: None, held=1)
    assert specs[-1].video.path == "/v/two.mp4" and specs[-1].indices[-1] == 30 - 2 - 1  # the margin kept
    assert all(max(s.indices) < min(specs[-1].indices) for s in specs[:-1] if s.video.path == "/v/two.mp4")
    assert plan_clips(one, frames=9, stride=1, clips=4, notice=lambda m: None)[0].indices[0] == 0  # none held: as was
    with pytest.raises(UserError, match="--validation-clips 1: one.mp4 has 40 frames, too few"):
        plan_clips(one, frames=30, stride=1, clips=2, notice=lambda m: None, held=1)


def _inputs(m):
    return testing.inputs(m, 1, (3, 4, 4))


def test_trained_blocks_round_trip_and_removal_restores_the_pretrained_values(tmp_path):
    m = testing.build("WanTransformer3DModel")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    mg.apply_motion_guidance(m)
    mg.add_lora(m, rank=2)
    params = train_blocks(m, [0])
    with torch.no_grad():
        for p in params:
            p.add_(0.05)
    kw = _inputs(m)
    mg.set_guidance(m, testing.layout_guidance("ref", (3, 4, 4), 4))
    out = m(**kw)[0]
    mg.save_motion_guidance(m, tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "motion_guidance.json").read_text())
    assert meta["trained_blocks"] == [0] and meta["version"] == 2
    mg.remove_motion_guidance(m)
    now = m.state_dict()
    assert set(now) == set(before) and all(torch.equal(now[k], before[k]) for k in before)
    fresh = testing.build("WanTransformer3DModel")
    mg.load_motion_guidance(fresh, tmp_path / "a")
    mg.set_guidance(fresh, testing.layout_guidance("ref", (3, 4, 4), 4))
    assert torch.allclose(fresh(**kw)[0], out, atol=1e-6)
    mg.remove_motion_guidance(fresh)
    assert all(torch.equal(fresh.state_dict()[k], before[k]) for k in before)


def test_an_adapter_for_another_transformer_config_is_refused_before_the_model_changes(tmp_path):
    m = testing.build("WanTransformer3DModel")
    mg.apply_motion_guidance(m)
    mg.save_motion_guidance(m, tmp_path / "a")
    cfg = transformer_config(m)
    cfg["in_channels"] = 36  # trained on the image-to-video layout (condition channels)
    (tmp_path / "a" / PIPELINE_MANIFEST).write_text(json.dumps({
        "pipeline_class": "WanImageToVideoPipeline", "transformer_class": "WanTransformer3DModel",
        "transformer_config": cfg}))
    fresh = testing.build("WanTransformer3DModel")
    with pytest.raises(mg.MotionGuidanceError, match=r"trained on a WanImageToVideoPipeline .*\(in_channels: trained 36 vs model 4\)"):
        mg.load_motion_guidance(fresh, tmp_path / "a")
    assert getattr(fresh, "motion_guidance", None) is None and not hasattr(fresh, "_diffusers_hook")
