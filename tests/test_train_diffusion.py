"""DDPM training: learns, resumes exactly from its checkpoint, and refuses mismatched checkpoints."""

from __future__ import annotations

import json

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


def _flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_ema_of_a_short_run_is_close_to_the_trained_weights(digits):
    """The EMA warms up: after 30 steps at decay 0.999 it sits near the trained weights (measured: 0.24 of the
    distance travelled), not near the initial ones, where a fixed 0.999 from step one would leave it
    (0.999 ** 30 = 97% of the initial weights)."""
    x = torch.from_numpy(digits[0][:128])
    kwargs = dict(max_timestep=40, batch_size=32, lr=1e-3, progress=False, seed=1)
    initial = _flat(train_diffusion(x, steps=0, **kwargs).unet)
    trained = _flat(train_diffusion(x, steps=30, ema_decay=0.0, **kwargs).unet)  # decay 0: the last weights
    averaged = _flat(train_diffusion(x, steps=30, ema_decay=0.999, **kwargs).unet)
    travelled = float((trained - initial).norm())
    assert travelled > 0
    assert float((averaged - trained).norm()) < 0.4 * travelled
    assert float((averaged - initial).norm()) > 0.6 * travelled
    with pytest.raises(ValueError, match="ema_decay"):
        train_diffusion(x, steps=1, ema_decay=1.0, progress=False)


def test_a_time_budget_reports_and_saves_the_steps_actually_run(tmp_path, digits, caplog):
    import logging

    from diffence_plugin import Reconstructor

    x = torch.from_numpy(digits[0][:32])
    with caplog.at_level(logging.INFO, logger="diffence_plugin"):
        rec = train_diffusion(x, steps=10_000, batch_size=8, max_seconds=0.5, progress=False)
    run = rec.training
    assert run["stopped"] == "time budget" and 0 < run["steps"] < 10_000 and run["steps"] == run["steps_this_run"]
    assert f"{run['steps']} steps in" in caplog.text and "stopped by time budget" in caplog.text
    full = train_diffusion(x, steps=3, batch_size=8, progress=False)
    assert full.training["stopped"] == "steps" and full.training["steps"] == 3
    rec.save_pretrained(tmp_path / "m")
    assert Reconstructor.from_pretrained(tmp_path / "m").training == json.loads(json.dumps(run))
    (tmp_path / "m" / "training.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        Reconstructor.from_pretrained(tmp_path / "m")


def test_loading_a_model_prints_no_accelerate_warning(tmp_path, digits, capfd):
    from diffence_plugin import Reconstructor

    train_diffusion(torch.from_numpy(digits[0][:8]), steps=1, batch_size=8, progress=False).save_pretrained(tmp_path)
    capfd.readouterr()
    Reconstructor.from_pretrained(tmp_path)
    captured = capfd.readouterr()
    assert "accelerate" not in captured.err + captured.out


def test_a_run_stopped_by_its_time_budget_can_be_continued(tmp_path, digits):
    x = torch.from_numpy(digits[0][:32])
    kwargs = dict(batch_size=8, progress=False, checkpoint=tmp_path / "c.pt", checkpoint_every=10_000)
    first = train_diffusion(x, steps=10_000, max_seconds=0.3, **kwargs)
    assert first.training["stopped"] == "time budget"
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert int(state["step"]) == first.training["steps"]
    second = train_diffusion(x, steps=first.training["steps"] + 2, **kwargs)
    assert second.training["steps"] == first.training["steps"] + 2 and second.training["steps_this_run"] == 2


def test_channels_last_training_learns_the_same_model(digits):
    """Channels-last memory format changes the convolutions' arithmetic order, not the model: after 5 steps
    the weights agree with the default's within one Adam step (lr 1e-3; Adam's normalised update turns a
    rounding difference in a near-zero gradient into up to lr), and the record says it was used."""
    x = torch.from_numpy(digits[0][:64])
    plain = train_diffusion(x, steps=5, batch_size=16, lr=1e-3, ema_decay=0.0, progress=False)
    fast = train_diffusion(x, steps=5, batch_size=16, lr=1e-3, ema_decay=0.0, progress=False, channels_last=True)
    for a, b in zip(plain.unet.parameters(), fast.unet.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)
        assert b.is_contiguous()  # the saved model is an ordinary one
    assert fast.training["channels_last"] is True and "channels_last" not in plain.training
