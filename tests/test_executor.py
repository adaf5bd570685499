"""The executor seam: the local default, the Ray backend (a real local Ray instance, marked ``ray``) giving
bit-identical results, surviving a killed worker, and a clear error without the ray extra."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffence_plugin import Diffence
from diffence_plugin.attacks.lira import LiRA, logit_confidence
from diffence_plugin.attacks.references import ReferenceRecipe, train_references
from diffence_plugin.audit.executor import (
    LocalExecutor,
    candidates_in_shards,
    get_executor,
    shards,
)

from .conftest import LinearClassifier, make_reconstructor


def _square(item, *, offset):
    return item * item + offset


def test_local_executor_keeps_item_order_and_restores_the_thread_count():
    before = torch.get_num_threads()
    seen = []
    out = LocalExecutor(threads=1, progress=False).map(
        lambda item, **_: seen.append(torch.get_num_threads()) or _square(item, offset=1), [3, 1, 2], shared={})
    assert out == [10, 2, 5] and seen == [1, 1, 1] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1"):
        LocalExecutor(threads=0)
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        get_executor("dask")
    assert shards(5, 2) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(ValueError, match="shard size"):
        shards(5, 0)


def test_a_missing_ray_extra_gets_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what Python does when a package is not installed
    monkeypatch.delitem(sys.modules, "diffence_plugin.adapters.ray_executor", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'diffence-plugin\[ray\]'"):
        get_executor("ray")


def test_sharded_reconstruction_equals_the_whole_batch_in_deterministic_mode(images):
    defense = Diffence(make_reconstructor(), n=3, t=40, k=20, scenario=3, seed=11, levels=255)
    model = LinearClassifier().eval()
    whole = defense.candidates(model, images)
    parts = candidates_in_shards(LocalExecutor(progress=False), defense, model, images.numpy(), 4)
    torch.testing.assert_close(parts.candidate_log_probs, whole.candidate_log_probs, atol=1e-6, rtol=1e-6)
    assert torch.equal(parts.u, whole.u)
    random = Diffence(make_reconstructor(), n=3, t=40, k=20, scenario=3, seed=11, deterministic=False)

    class Elsewhere(LocalExecutor):
        name = "ray"

    with pytest.raises(ValueError, match="needs Diffence\\(deterministic=True\\)"):
        candidates_in_shards(Elsewhere(progress=False), random, model, images.numpy(), 4)


# ---- Ray (a real local instance) ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    from diffence_plugin.adapters.ray_executor import RayExecutor

    executor = RayExecutor(threads=1, max_retries=2, init={"num_cpus": 2})
    yield executor
    import ray as _ray

    _ray.shutdown()


def _recipe() -> ReferenceRecipe:
    return ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=3, batch_size=32)


def _lira_scores(refs, target, x, y) -> np.ndarray:
    with torch.no_grad():
        phi = lambda m: logit_confidence(torch.softmax(m(torch.from_numpy(x)), -1).double().numpy(), y)  # noqa: E731
        return LiRA().score(phi(target), np.stack([phi(m) for m in refs.models]), refs.in_mask)


def _same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for m1, m2 in zip(a.models, b.models)
               for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))


@pytest.mark.ray
def test_local_and_ray_give_bit_identical_references_and_lira_scores(ray_executor, digits, tmp_path):
    x, y = digits
    x, y = x[:160], y[:160]
    target = _recipe().train(x[:80], y[:80], 99)
    local = train_references(_recipe(), x, y, 4, seed=3, progress=False, executor=LocalExecutor(threads=1))
    remote = train_references(_recipe(), x, y, 4, seed=3, cache=tmp_path, executor=ray_executor)
    assert _same_weights(local, remote)
    np.testing.assert_array_equal(local.in_mask, remote.in_mask)
    np.testing.assert_array_equal(_lira_scores(local, target, x, y), _lira_scores(remote, target, x, y))
    assert len(list(tmp_path.glob("*.safetensors"))) == 4  # the workers wrote the cache


@pytest.mark.ray
def test_reconstruction_shards_on_ray_equal_the_local_ones(ray_executor, images):
    defense = Diffence(make_reconstructor(), n=3, t=40, k=20, scenario=3, seed=11, levels=255)
    model = LinearClassifier().eval()
    local = candidates_in_shards(LocalExecutor(threads=1, progress=False), defense, model, images.numpy(), 2)
    remote = candidates_in_shards(ray_executor, defense, model, images.numpy(), 2)
    assert torch.equal(local.candidate_log_probs, remote.candidate_log_probs) and torch.equal(local.u, remote.u)


@pytest.mark.ray
def test_a_killed_worker_is_retried_and_the_results_do_not_change(ray_executor, digits, tmp_path):
    """Reference 2's first attempt writes its worker's pid and waits; this test kills that process with
    SIGKILL from outside. Ray retries the task; the references equal a local run's, the cache holds all four,
    and a restarted run loads them all without training."""
    x, y = digits
    x, y = x[:160], y[:160]
    base = _recipe()
    pid_file, attempts = tmp_path / "victim.pid", tmp_path / "attempts"
    attempts.mkdir()

    def train(a, b, seed, base=base, pid_file=str(pid_file), attempts=str(attempts)):
        import os as _os
        import time as _time
        from pathlib import Path as _Path

        marker = _Path(attempts) / str(seed)
        if seed == victim_seed and not marker.exists():
            marker.write_text("first attempt")
            _Path(pid_file).write_text(str(_os.getpid()))
            _time.sleep(120)  # killed from outside long before this ends
        return base.train(a, b, seed)

    from diffence_plugin.attacks.references import reference_seed

    victim_seed = reference_seed(5, 2)
    recipe = ReferenceRecipe(train=train, key=base.key, build=base.build)
    killed = []

    def killer():
        deadline = time.time() + 90
        while time.time() < deadline and not pid_file.exists():
            time.sleep(0.1)
        if pid_file.exists():
            time.sleep(0.5)
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer)
    thread.start()
    cache = tmp_path / "cache"
    remote = train_references(recipe, x, y, 4, seed=5, cache=cache, executor=ray_executor)
    thread.join()
    assert killed, "the victim task never started"
    local = train_references(base, x, y, 4, seed=5, progress=False, executor=LocalExecutor(threads=1))
    assert _same_weights(local, remote)
    assert len(list(Path(cache).glob("*.safetensors"))) == 4

    def refuse(*_):
        raise AssertionError("a restarted run must load every finished reference from the cache")

    again = train_references(ReferenceRecipe(train=refuse, key=base.key, build=base.build), x, y, 4, seed=5,
                             cache=cache, executor=ray_executor)
    assert _same_weights(local, again)


def test_the_ray_extra_is_declared():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'ray = ["ray>=2.9"]' in text
