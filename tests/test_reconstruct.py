"""The diffusion maths against float64 references written from the formulas (REFERENCE.md section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from diffence_plugin import Reconstructor
from diffence_plugin.reconstruct import default_scheduler

from .conftest import make_reconstructor


def alpha_bar_float64(t: int) -> float:
    """abar_t = prod_{i<=t} (1 - beta_i), linear betas 1e-4..0.02 over 1000 steps (diffusers indexing)."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return float(np.prod(1.0 - betas[: t + 1]))


def test_alpha_bar_matches_formula_and_reference_value():
    scheduler = default_scheduler()
    for t in (0, 10, 40, 500, 999):
        assert float(scheduler.alphas_cumprod[t]) == pytest.approx(alpha_bar_float64(t), rel=1e-5)
    assert alpha_bar_float64(40) == pytest.approx(0.98, abs=0.002)


def test_forward_noise_is_the_closed_form(reconstructor):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=gen)
    for t in (10, 40, 300):
        abar = alpha_bar_float64(t)
        expected = math.sqrt(abar) * x0.double() + math.sqrt(1 - abar) * eps.double()
        got = reconstructor.add_noise(x0, eps, t)
        torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def ddim_reference(unet, x: torch.Tensor, noise: torch.Tensor, t: int, k: int, clip: bool) -> torch.Tensor:
    """Float64 DDIM (eta = 0) from the formulas; only the UNet runs in float32."""
    x0 = x.double() * 2 - 1
    abar = alpha_bar_float64
    sample = math.sqrt(abar(t)) * x0 + math.sqrt(1 - abar(t)) * noise.double()
    steps = list(range(t, 0, -k))
    for i, step in enumerate(steps):
        with torch.no_grad():
            eps = unet(sample.float(), step).sample.double()
        pred_x0 = (sample - math.sqrt(1 - abar(step)) * eps) / math.sqrt(abar(step))
        if clip:
            pred_x0 = pred_x0.clamp(-1, 1)
        if i == len(steps) - 1:
            sample = pred_x0
        else:
            prev = step - k
            sample = math.sqrt(abar(prev)) * pred_x0 + math.sqrt(1 - abar(prev)) * eps
    return ((sample.clamp(-1, 1) + 1) / 2)


@pytest.mark.parametrize("t,k", [(40, 10), (30, 15), (20, 20)])
def test_ddim_matches_float64_reference(reconstructor, t, k):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 8, 8, generator=gen)
    noise = torch.randn(3, 2, 1, 8, 8, generator=gen)
    got = reconstructor.reconstruct(x, 2, t, k, noise=noise)
    clip = bool(reconstructor.scheduler.config.clip_sample)
    expected = ddim_reference(reconstructor.unet, x.repeat_interleave(2, 0), noise.reshape(6, 1, 8, 8), t, k, clip)
    torch.testing.assert_close(got.reshape(6, 1, 8, 8).double(), expected, atol=2e-5, rtol=1e-4)


def test_unet_called_once_per_ddim_step_at_the_right_timesteps(reconstructor):
    seen = []
    hook = reconstructor.unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1][0])))
    try:
        reconstructor.reconstruct(torch.rand(2, 1, 8, 8), 3, 40, 10, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert seen == [40, 30, 20, 10]


def test_t_zero_returns_the_input(reconstructor, images):
    out = reconstructor.reconstruct(images, 3, 0, 10)
    assert out.shape == (6, 3, 1, 8, 8)
    for j in range(3):
        torch.testing.assert_close(out[:, j], images)


def test_chunking_does_not_change_results_and_bounds_batch(reconstructor, images):
    noise = torch.randn(6, 5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sizes = []
    hook = reconstructor.unet.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        small = reconstructor.reconstruct(images, 5, 40, 10, noise=noise, max_batch=7)
    finally:
        hook.remove()
    big = reconstructor.reconstruct(images, 5, 40, 10, noise=noise, max_batch=1000)
    torch.testing.assert_close(small, big, atol=1e-5, rtol=1e-5)
    assert max(sizes) <= 7


def test_the_cpu_unet_chunk_leaves_every_candidate_and_release_bit_identical(classifier):
    """The library runs the UNet a chunk at a time on a CPU (faster than one large call); against one call of
    all 1,600 images, chunks of 64 and 32 images and the measured chunk give the same bits in candidates and
    releases."""
    from diffence_plugin import Diffence

    model = make_reconstructor(seed=4)
    x = torch.round(torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 16) / 16
    results = {}
    for chunk in (2048, 64, 32, "auto"):
        model.cpu_chunk = chunk
        sizes = []
        hook = model.unet.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
        try:
            defense = Diffence(model, n=8, t=40, k=10, scenario=3, seed=0x5EED_0F_CA11, levels=16, max_batch=2048)
            cands = defense.candidates(classifier, x)
        finally:
            hook.remove()
        if chunk != "auto":
            assert max(sizes) == min(chunk, 1600)
        results[chunk] = (cands.candidate_log_probs, defense.release(cands).probs)
    for chunk in (64, 32, "auto"):
        assert all(torch.equal(a, b) for a, b in zip(results[chunk], results[2048])), chunk


def test_cifar_size_reconstructions_are_bit_identical_at_every_chunk_the_measurement_may_pick():
    """On 32x32x3 images (the CPU preset's shape) every chunk the CPU measurement can choose, 16 to 256 images
    per UNet call, gives the same bits as one call of all 320 images."""
    from diffence_plugin import reconstruct

    model = reconstruct.Reconstructor(UNet2DModel(**reconstruct.tiny_unet_config(32, 3, 8)))
    x = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(40, 8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    outs = {}
    for chunk in (320, 16, 32, 64, 128, 256):
        model.cpu_chunk = chunk
        outs[chunk] = model.reconstruct(x, 8, 40, 20, noise=noise, max_batch=320)
    assert all(torch.equal(outs[c], outs[320]) for c in (16, 32, 64, 128, 256))


def test_the_cpu_chunk_is_measured_once_and_kept_unless_another_is_clearly_faster(monkeypatch):
    """``fastest_chunk`` keeps the default within its 5% margin and takes a clearly faster chunk; a
    Reconstructor times each candidate (16 to 256 CIFAR images' pixels, capped by max_batch) once per process
    and key, and not at all for a call that fits one chunk or when a number is set."""
    from diffence_plugin import reconstruct

    assert reconstruct.fastest_chunk({16: 100.0, 64: 100.0, 128: 104.0}, default=64) == 64
    assert reconstruct.fastest_chunk({16: 100.0, 64: 100.0, 128: 106.0}, default=64) == 128
    assert reconstruct.fastest_chunk({16: 300.0, 64: 100.0}, default=64) == 16

    model = reconstruct.Reconstructor(UNet2DModel(**reconstruct.tiny_unet_config(16, 1, 8)))
    monkeypatch.setattr(reconstruct, "_MEASURED_CHUNKS", {})
    calls = []
    hook = model.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        assert model.chunk(images=200, max_batch=4096, t=40) == 256  # one default chunk: nothing measured
        assert calls == []
        chosen = model.chunk(images=10_000, max_batch=4096, t=40)
        measured = sorted(set(calls))
        assert measured == [64, 128, 256, 512, 1024] and chosen in measured
        for size in measured:  # each timed twice at least, on 512 CIFAR images' pixels (2,048 16x16 images)
            assert calls.count(size) >= 2 and calls.count(size) * size >= 2048
        timed = len(calls)
        assert model.chunk(images=10_000, max_batch=4096, t=60) == chosen and len(calls) == timed  # kept
        assert model.chunk(images=10_000, max_batch=300, t=40) in {64, 128, 256, 300}  # the cap is a new key
        model.cpu_chunk = 48
        assert model.chunk(images=10_000, max_batch=4096, t=40) == 48
    finally:
        hook.remove()


def test_reconstructions_leave_inference_mode(reconstructor, images):
    """The UNet runs under inference_mode, yet what it returns is an ordinary tensor that autograd may use."""
    out = reconstructor.reconstruct(images, 2, 20, 10, generator=torch.Generator().manual_seed(0))
    assert not out.is_inference()
    weight = torch.ones((), requires_grad=True)
    (out * weight).sum().backward()
    assert weight.grad is not None


def test_bf16_on_a_cpu_without_bf16_units_warns(images):
    from diffence_plugin.reconstruct import _cpu_has_bf16

    model = make_reconstructor()
    if _cpu_has_bf16():
        pytest.skip("this CPU computes bf16 in hardware")
    with pytest.warns(RuntimeWarning, match="bf16 autocast on a CPU without bf16 units"):
        model.reconstruct(images[:1], 1, 10, 10, generator=torch.Generator().manual_seed(0), autocast=torch.bfloat16)


def test_a_compiled_reconstructor_is_reproducible_close_to_eager_and_stays_in_its_process(images):
    """torch.compile (frozen weights): the same bits on every call, within float rounding of eager, and a
    pickled copy (a worker's) carries the eager model only."""
    import pickle

    model = make_reconstructor(seed=5)
    noise = torch.randn(6, 2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    eager = model.reconstruct(images, 2, 20, 10, noise=noise)
    model.compile()
    first = model.reconstruct(images, 2, 20, 10, noise=noise)
    assert torch.equal(first, model.reconstruct(images, 2, 20, 10, noise=noise))
    torch.testing.assert_close(first, eager, atol=1e-4, rtol=0)
    assert pickle.loads(pickle.dumps(model))._forward is None


def test_generator_makes_runs_reproducible(reconstructor, images):
    a = reconstructor.reconstruct(images, 2, 40, 10, generator=torch.Generator().manual_seed(5))
    b = reconstructor.reconstruct(images, 2, 40, 10, generator=torch.Generator().manual_seed(5))
    c = reconstructor.reconstruct(images, 2, 40, 10, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_bad_schedule_arguments_are_named(reconstructor, images):
    with pytest.raises(ValueError, match="multiple of k"):
        reconstructor.reconstruct(images, 2, 45, 10)
    with pytest.raises(ValueError, match="DDIM stride"):
        reconstructor.reconstruct(images, 1, 300, 300)
    with pytest.raises(ValueError, match="n must be >= 1"):
        reconstructor.reconstruct(images, 0, 40, 10)
    with pytest.raises(ValueError, match="noise must have shape"):
        reconstructor.reconstruct(images, 2, 40, 10, noise=torch.zeros(6, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="channel"):
        reconstructor.reconstruct(torch.rand(2, 3, 8, 8), 2, 40, 10)
    with pytest.raises(ValueError, match="spatial size"):
        reconstructor.reconstruct(torch.rand(2, 1, 16, 16), 2, 40, 10)


def test_save_and_load_roundtrip(tmp_path, images):
    rec = make_reconstructor(seed=3)
    rec.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = Reconstructor.from_pretrained(tmp_path / "model")
    noise = torch.randn(6, 2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rec.reconstruct(images, 2, 40, 10, noise=noise),
                               loaded.reconstruct(images, 2, 40, 10, noise=noise))


def test_missing_and_corrupt_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="diffusion model folder '.*nothing' does not exist"):
        Reconstructor.from_pretrained(tmp_path / "nothing")  # said as such, not as a list of missing files
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing unet/config.json"):
        Reconstructor.from_pretrained(tmp_path / "empty")
    rec = make_reconstructor()
    rec.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="scheduler/scheduler_config.json"):
        Reconstructor.from_pretrained(tmp_path / "m")
    rec.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match="could not be loaded"):
        Reconstructor.from_pretrained(tmp_path / "c")


def test_constructor_rejects_non_unet_and_non_epsilon_schedules():
    from diffusers import DDPMScheduler

    with pytest.raises(TypeError, match="UNet2DModel"):
        Reconstructor(torch.nn.Linear(2, 2))
    rec = make_reconstructor()
    with pytest.raises(ValueError, match="epsilon"):
        Reconstructor(rec.unet, DDPMScheduler(prediction_type="v_prediction"))


def test_cifar_unet_at_reduced_width_keeps_the_layout():
    from diffusers import UNet2DModel

    from diffence_plugin import cifar_unet_config

    full, eighth = cifar_unet_config(), cifar_unet_config(8)
    assert eighth["block_out_channels"] == (16, 32, 32, 32)
    layout = {k: v for k, v in full.items() if k != "block_out_channels"}
    assert {k: v for k, v in eighth.items() if k not in ("block_out_channels", "norm_num_groups",
                                                          "attention_head_dim")} == layout
    unet = UNet2DModel(**eighth)
    assert 0.5e6 < sum(p.numel() for p in unet.parameters()) < 0.6e6
    with torch.no_grad():
        assert unet(torch.zeros(1, 3, 32, 32), 10).sample.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="divisor"):
        cifar_unet_config(3)
