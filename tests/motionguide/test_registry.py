"""Architecture registry: VAE time/space mapping, frame-count rules, class lookup (no model built here)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from motionguide.registry import ArchSpec, VAECompression, get_spec, register_architecture, supported_architectures, vae_from_pipeline


def test_supported_and_lookup():
    assert supported_architectures() == [
        "CogVideoXTransformer3DModel", "HunyuanVideoTransformer3DModel", "LTXVideoTransformer3DModel",
        "LatteTransformer3DModel", "WanTransformer3DModel",
    ]
    class WanTransformer3DModel:  # noqa: N801 - same name as the diffusers class
        pass

    class MyWan(WanTransformer3DModel):
        pass

    assert get_spec(MyWan()).name == "WanTransformer3DModel"  # subclasses resolve through the MRO
    with pytest.raises(ValueError, match="unsupported transformer class Foo; supported: CogVideoX.*register_architecture"):
        get_spec("Foo")
    with pytest.raises(ValueError, match="already registered"):
        register_architecture(get_spec("LatteTransformer3DModel"))


@pytest.mark.parametrize("name,spatial,temporal,first", [
    ("WanTransformer3DModel", 8, 4, True), ("CogVideoXTransformer3DModel", 8, 4, True),
    ("LTXVideoTransformer3DModel", 32, 8, True), ("HunyuanVideoTransformer3DModel", 8, 4, True),
    ("LatteTransformer3DModel", 8, 1, False),
])
def test_default_compression(name, spatial, temporal, first):
    assert get_spec(name).vae == VAECompression(spatial, temporal, first)


def test_time_mapping():
    wan = VAECompression(8, 4, True)
    assert [wan.latent_frames(n) for n in (1, 5, 49, 81)] == [1, 2, 13, 21]
    assert [wan.latent_index_of(p) for p in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert all(wan.latent_index_of(p) == j for j in range(5) for p in wan.pixel_frames_of(j))
    ltx = VAECompression(32, 8, True)
    assert ltx.latent_frames(161) == 21 and ltx.pixel_frames_of(1) == tuple(range(1, 9))
    latte = VAECompression(8, 1, False)
    assert latte.latent_frames(16) == 16 and latte.pixel_frames_of(3) == (3,)
    grouped = VAECompression(8, 2, False)
    assert grouped.latent_frames(6) == 3 and grouped.pixel_frames_of(1) == (2, 3)


def test_frame_count_errors_suggest_nearest():
    with pytest.raises(ValueError, match=r"4k\+1 frames .* got 50; use 49 or 53"):
        VAECompression(8, 4, True).check_num_frames(50)
    with pytest.raises(ValueError, match=r"8k\+1 frames .* got 100; use 97 or 105"):
        VAECompression(32, 8, True).check_num_frames(100)
    with pytest.raises(ValueError, match="multiple of 2 frames, got 5; use 4 or 6"):
        VAECompression(8, 2, False).check_num_frames(5)
    with pytest.raises(ValueError, match="at least 1"):
        VAECompression().check_num_frames(0)
    with pytest.raises(ValueError, match="positive int"):
        VAECompression(spatial=0)


def test_space_mapping():
    wan = VAECompression(8, 4, True)
    assert wan.latent_size(480, 832) == (60, 104)
    with pytest.raises(ValueError, match="multiples of 16 .* use height 480 or 496 and width 832"):
        wan.latent_size(485, 832, multiple=2)


def test_token_grid_and_patch():
    cfg = SimpleNamespace(config=SimpleNamespace(patch_size=(1, 2, 2)))
    wan = get_spec("WanTransformer3DModel")
    assert wan.patch_size(cfg) == (1, 2, 2) and wan.token_grid(cfg, (13, 60, 104)) == (13, 30, 52)
    cog15 = SimpleNamespace(config=SimpleNamespace(patch_size=2, patch_size_t=2))
    assert get_spec("CogVideoXTransformer3DModel").token_grid(cog15, (13, 8, 8)) == (7, 4, 4)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        wan.token_grid(cfg, (3, 7, 8))


def test_vae_from_pipeline():
    spec = get_spec("WanTransformer3DModel")
    pipe = SimpleNamespace(vae_scale_factor_spatial=16, vae_scale_factor_temporal=4)
    assert vae_from_pipeline(pipe, spec) == VAECompression(16, 4, True)  # Wan 2.2 TI2V VAE
    ltx = SimpleNamespace(vae_spatial_compression_ratio=32, vae_temporal_compression_ratio=8)
    assert vae_from_pipeline(ltx, get_spec("LTXVideoTransformer3DModel")) == VAECompression(32, 8, True)
    assert vae_from_pipeline(SimpleNamespace(), spec) == spec.vae
