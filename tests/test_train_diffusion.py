"""DDPM training: learns, resumes exactly from its checkpoint, and refuses mismatched checkpoints."""

from __future__ import annotations

import pytest
import torch

from diffence_plugin import train_diffusion
from diffence_plugin.reconstruct import default_scheduler


def denoising_loss(rec, x: torch.Tensor, t: int = 30) -> float:
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    x_t = rec.add_noise(x * 2 - 1, noise, t)
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(rec.unet(x_t, t).sample, noise))


def test_training_lowers_the_denoising_loss(digits):
    x = torch.from_numpy(digits[0][:200])
    before = train_diffusion(x, steps=0, max_timestep=40, progress=False)
    after = train_diffusion(x, steps=60, max_timestep=40, batch_size=64, lr=1e-3, ema_decay=0.9, progress=False)
    assert denoising_loss(after, x) < 0.7 * denoising_loss(before, x)


def test_resumed_training_equals_uninterrupted_training(tmp_path, digits):
    x = torch.from_numpy(digits[0][:64])
    kwargs = dict(max_timestep=40, batch_size=16, progress=False, checkpoint_every=2)
    straight = train_diffusion(x, steps=4, checkpoint=tmp_path / "a.pt", **kwargs)
    train_diffusion(x, steps=2, checkpoint=tmp_path / "b.pt", **kwargs)
    resumed = train_diffusion(x, steps=4, checkpoint=tmp_path / "b.pt", **kwargs)
    for (name, a), (_, b) in zip(straight.unet.state_dict().items(), resumed.unet.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_checkpoint_from_other_settings_is_refused(tmp_path, digits):
    x = torch.from_numpy(digits[0][:32])
    train_diffusion(x, steps=1, batch_size=8, checkpoint=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train_diffusion(x, steps=2, batch_size=16, checkpoint=tmp_path / "c.pt", progress=False)


def test_checkpoints_are_loaded_without_unpickling_code(tmp_path, digits):
    """A checkpoint holding a pickled object (not plain tensors/containers) is rejected by weights_only=True."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"step": Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError):
        train_diffusion(torch.from_numpy(digits[0][:8]), steps=1, checkpoint=path, progress=False)


def test_timesteps_are_sampled_only_up_to_the_maximum(monkeypatch, digits):
    seen = []
    from diffusers import UNet2DModel

    original = UNet2DModel.forward
    monkeypatch.setattr(UNet2DModel, "forward", lambda self, x, t, *a, **k: (seen.append(t.max()), original(self, x, t, *a, **k))[1])
    train_diffusion(torch.from_numpy(digits[0][:32]), steps=5, batch_size=32, max_timestep=12, progress=False)
    assert max(int(t) for t in seen) <= 12
    with pytest.raises(ValueError, match="max_timestep"):
        train_diffusion(torch.from_numpy(digits[0][:8]), steps=1, max_timestep=5000, progress=False)
    assert default_scheduler().config.num_train_timesteps == 1000
