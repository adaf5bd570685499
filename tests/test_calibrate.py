"""Calibration: the vectorised grid search against a loop written from the definition, and its JSON file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from diffence_plugin import Calibration, Diffence
from diffence_plugin.calibrate import interval_scenario1, interval_scenario2

from .conftest import make_reconstructor


def synthetic(seed: int, shift: float, s: int = 30, n: int = 8):
    gen = torch.Generator().manual_seed(seed)
    scores = (torch.randn(s, n, generator=gen, dtype=torch.float64) * 2 + shift)
    matches = torch.rand(s, n, generator=gen) > 0.2
    matches[0] = False
    original = torch.randn(s, generator=gen, dtype=torch.float64) + shift
    return scores, matches, original


def released_histogram(scores, matches, original, lo, hi, edges):
    """Expected histogram of released phi, one sample at a time (the definition)."""
    hist = np.zeros(len(edges) - 1)
    for row, ok, orig in zip(scores.numpy(), matches.numpy(), original.numpy()):
        if not ok.any():
            values, weights = [orig], [1.0]
        else:
            inside = ok & (row >= lo) & (row <= hi)
            if inside.any():
                values, weights = row[inside], np.full(inside.sum(), 1.0 / inside.sum())
            else:
                dist = np.where(ok, np.maximum(lo - row, 0) + np.maximum(row - hi, 0), np.inf)
                values, weights = [row[int(np.argmin(dist))]], [1.0]
        idx = np.clip(np.searchsorted(edges[1:-1], values, side="left"), 0, len(edges) - 2)
        np.add.at(hist, idx, weights)
    return hist / len(scores)


def test_grid_search_matches_a_per_sample_loop():
    member, nonmember = synthetic(0, 6.0), synthetic(1, 3.0)
    grid, bins = 9, 7
    lo, hi, js, js_before = interval_scenario1(member, nonmember, grid=grid, bins=bins, max_elements=50)
    (ms, mm, mo), (ns, nm, no) = member, nonmember
    everything = torch.cat([torch.cat([ms, mo[:, None]], 1).flatten(), torch.cat([ns, no[:, None]], 1).flatten()])
    edges = np.linspace(float(everything.min()), float(everything.max()) + 1e-9, bins + 1)
    points = np.linspace(float(ms[mm].min()), float(ns[nm].max()), grid)
    best = (np.inf, None)
    for i in range(grid):
        for j in range(i + 1, grid):
            hm = released_histogram(ms, mm, mo, points[i], points[j], edges)
            hn = released_histogram(ns, nm, no, points[i], points[j], edges)
            d = jensenshannon(hm, hn) ** 2
            if d < best[0] - 1e-12:
                best = (d, (points[i], points[j]))
    assert js == pytest.approx(best[0], abs=1e-6)
    assert (lo, hi) == pytest.approx(best[1])
    assert js <= js_before


def test_scenario2_interval_is_min_and_mean_of_member_candidates():
    scores = torch.tensor([[1.0, 5.0], [3.0, 100.0]], dtype=torch.float64)
    matches = torch.tensor([[True, True], [True, False]])
    assert interval_scenario2(scores, matches) == (1.0, 3.0)
    with pytest.raises(ValueError, match="kept its label"):
        interval_scenario2(scores, torch.zeros_like(matches))


@pytest.fixture()
def calibrated(classifier):
    gen = torch.Generator().manual_seed(0)
    defense = Diffence(make_reconstructor(), n=4, t=40, k=10, scenario=1)
    defense.calibrate(classifier, torch.rand(8, 1, 8, 8, generator=gen), torch.rand(8, 1, 8, 8, generator=gen),
                      grid=6, bins=5)
    return defense


def test_calibration_json_roundtrip(tmp_path, calibrated):
    calibrated.save_calibration(tmp_path / "cal.json")
    other = Diffence(calibrated.reconstructor, n=4, t=40, k=10, scenario=1)
    loaded = other.load_calibration(tmp_path / "cal.json")
    assert loaded == calibrated.calibration


def test_calibration_from_another_configuration_is_refused(tmp_path, calibrated):
    calibrated.save_calibration(tmp_path / "cal.json")
    with pytest.raises(ValueError, match="another configuration.*n: calibrated 4, defense has 5"):
        Diffence(calibrated.reconstructor, n=5, t=40, k=10, scenario=1).load_calibration(tmp_path / "cal.json")
    with pytest.raises(ValueError, match="reconstructor"):
        Diffence(make_reconstructor(seed=9), n=4, t=40, k=10, scenario=1).load_calibration(tmp_path / "cal.json")
    with pytest.raises(ValueError, match="scenario"):
        Diffence(calibrated.reconstructor, n=4, t=40, k=10, scenario=2).load_calibration(tmp_path / "cal.json")


@pytest.mark.parametrize("mutate,message", [
    (lambda p: p.write_text("{not json"), "not valid JSON"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not valid JSON"),
    (lambda p: p.write_text(json.dumps({"format": "other"})), "not a diffence-calibration file"),
    (lambda p: p.write_text(p.read_text().replace('"lo": ', '"lo": "x", "_": ')), "field 'lo'"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "lo": 10.0, "hi": 1.0})), "lo <= hi"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "version": 7})), "version 7"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "evil": 1})), "unknown field"),
])
def test_corrupt_calibration_files_are_named(tmp_path, calibrated, mutate, message):
    path = tmp_path / "cal.json"
    calibrated.save_calibration(path)
    mutate(path)
    with pytest.raises(ValueError, match=message):
        Calibration.from_json(path)


def test_scenarios_that_need_calibration_refuse_to_run_without(classifier, images):
    defense = Diffence(make_reconstructor(), n=2, scenario=1)
    with pytest.raises(ValueError, match="calibrate"):
        defense.defend(classifier, images)
    with pytest.raises(ValueError, match="non-members"):
        defense.calibrate(classifier, images)
    with pytest.raises(ValueError, match="needs no calibration"):
        Diffence(make_reconstructor(), n=2, scenario=3).calibrate(classifier, images)


def test_tune_chooses_the_noise_step_that_separates_least(tmp_path, classifier):
    gen = torch.Generator().manual_seed(3)
    members = torch.round(torch.rand(10, 1, 8, 8, generator=gen) * 255) / 255
    nonmembers = torch.round(torch.rand(10, 1, 8, 8, generator=gen) * 255) / 255
    base = Diffence(make_reconstructor(), n=4, t=40, k=10, scenario=1, seed=2**40 + 5)
    tuned = base.tune(classifier, members, nonmembers, t_choices=(10, 40, 60), n_choices=(2, 4), grid=6, bins=5)
    table = tuned.calibration.extra["t_search"]
    assert [(row["t"], row["n"]) for row in table] == [(t, n) for t in (10, 40, 60) for n in (2, 4)]
    best = min(table, key=lambda row: row["js_divergence"])
    assert (tuned.config.t, tuned.config.n) == (best["t"], best["n"])
    assert (tuned.calibration.t, tuned.calibration.n) == (best["t"], best["n"])
    assert tuned.calibration.js_divergence == best["js_divergence"]
    # the same search one noise step at a time, through the ordinary calibration (same secret seed: same noise)
    for t in (10, 40, 60):
        direct = base.with_config(t=t).calibrate(classifier, members, nonmembers, grid=6, bins=5)
        assert direct.js_divergence == next(r["js_divergence"] for r in table if (r["t"], r["n"]) == (t, 4))
    tuned.save_calibration(tmp_path / "c.json")
    assert Calibration.from_json(tmp_path / "c.json").extra["t_search"] == table


def test_tune_warns_when_no_noise_step_beats_the_undefended_model(classifier):
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[2.0, 1.0, 0.0]]).expand(x.shape[0], 3)

    gen = torch.Generator().manual_seed(4)
    base = Diffence(make_reconstructor(), n=2, t=20, k=10, scenario=1, seed=2**40 + 6)
    with pytest.warns(RuntimeWarning, match="no candidate noise step"):
        x = torch.round(torch.rand(12, 1, 8, 8, generator=gen) * 255) / 255
        base.tune(Constant(), x[:6], x[6:],
                  t_choices=(10, 20), grid=4, bins=4)


def test_tune_refuses_what_it_cannot_do(classifier):
    x = torch.full((4, 1, 8, 8), 128 / 255)
    base = Diffence(make_reconstructor(), n=2, t=20, k=10, scenario=1, seed=2**40 + 7)
    with pytest.raises(ValueError, match="scenario 1"):
        base.with_config(scenario=3).tune(classifier, x, x, t_choices=(10,))
    with pytest.raises(ValueError, match="multiple of k"):
        base.tune(classifier, x, x, t_choices=(15,))
    with pytest.raises(ValueError, match="cost budget"):
        base.tune(classifier, x, x, t_choices=(10,), n_choices=(3,))
    with pytest.raises(ValueError, match="at least one"):
        base.tune(classifier, x, x, t_choices=())
