"""Canaries (issue 26 §3): flipped-label or pixel-shuffled members and non-members, kept out of every average-case role and
audited on their own, the worst case that average-case audits understate (Aerni, Zhang & Tramer, CCS 2024)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffence_plugin.attacks.roles import (
    ROLES,
    flip_labels,
    membership_split,
    roles_from_members,
    shuffle_pixels,
)
from diffence_plugin.audit.plan import ConfigError, load_preset

from .test_engine import DEMO_TOY


def _sets(split) -> dict[str, set]:
    names = ROLES + ("population", "canary_members", "canary_nonmembers")
    return {name: set(getattr(split, name).tolist()) for name in names}


@pytest.mark.parametrize("draw", ["with_roles", "separate"])
def test_canaries_are_members_and_non_members_apart_from_every_role_and_leave_the_others_unchanged(draw):
    """Canary members are members, canary non-members are not, both are disjoint from every other role; adding
    canaries changes no other role (only the attacker's leftover pool shrinks), and the split is seeded."""
    members = np.random.default_rng(0).permutation(1000)[:300]

    def make(canaries: int):
        if draw == "with_roles":
            return membership_split(1000, 300, 20, 20, 100, seed=3, population=50, canaries=canaries)
        return roles_from_members(members, 1000, 20, 20, 100, 50, seed=3, canaries=canaries)

    plain, split = make(0), make(40)
    sets = _sets(split)
    assert len(sets["canary_members"]) == len(sets["canary_nonmembers"]) == 40
    assert sets["canary_members"] <= set(split.members.tolist())
    assert not sets["canary_nonmembers"] & set(split.members.tolist())
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sets[a] & sets[b], (a, b)
    assert not set(split.attacker_pool.tolist()) & (sets["canary_members"] | sets["canary_nonmembers"])
    for name in ROLES + ("population",):
        assert np.array_equal(getattr(split, name), getattr(plain, name)), name
    assert len(plain.attacker_pool) - len(split.attacker_pool) == 40
    assert np.array_equal(make(40).canaries, split.canaries)
    audit = split.canary_split()
    assert np.array_equal(audit.eval_members, split.canary_members) and len(audit.canary_members) == 0
    assert np.array_equal(audit.attacker_members, split.attacker_members)
    with pytest.raises(ValueError, match="no canaries"):
        plain.canary_split()
    with pytest.raises(ValueError, match="member roles need 341"):
        membership_split(1000, 340, 100, 100, 100, canaries=41)


def test_flip_labels_gives_each_canary_a_wrong_label_uniformly_and_touches_nothing_else():
    """Every flipped label differs from the true one and lies among the classes; the K - 1 wrong classes are
    equally likely (each 1/(K-1): a chi-square test at 10,000 draws); other records keep their labels; seeded."""
    from scipy.stats import chisquare

    y = np.arange(20_000) % 10
    idx = np.arange(0, 20_000, 2)
    out = flip_labels(y, idx, 10, seed=5)
    assert np.all(out[idx] != y[idx]) and out.min() >= 0 and out.max() <= 9
    keep = np.setdiff1d(np.arange(len(y)), idx)
    assert np.array_equal(out[keep], y[keep]) and np.array_equal(y, np.arange(20_000) % 10)
    shifts = (out[idx] - y[idx]) % 10
    counts = np.bincount(shifts, minlength=10)[1:]
    assert chisquare(counts).pvalue > 1e-3
    assert np.array_equal(flip_labels(y, idx, 10, seed=5), out)
    assert not np.array_equal(flip_labels(y, idx, 10, seed=6), out)
    with pytest.raises(ValueError, match="at least 2 classes"):
        flip_labels(y, idx, 1, seed=0)


def test_shuffle_pixels_permutes_each_canarys_pixels_and_touches_nothing_else():
    """Each canary image keeps its own pixels (a pixel's channels together, so its colours, range and grid) in
    new positions, each image its own permutation; other images and the input are untouched; seeded."""
    x = np.random.default_rng(0).integers(0, 256, (30, 3, 8, 8)).astype(np.float32) / 255
    before = x.copy()
    idx = np.array([1, 4, 7, 20])
    out = shuffle_pixels(x, idx, seed=9)
    assert np.array_equal(x, before) and out.dtype == x.dtype and out.shape == x.shape
    keep = np.setdiff1d(np.arange(len(x)), idx)
    assert np.array_equal(out[keep], x[keep])
    for i in idx:
        pixels = lambda a: sorted(map(tuple, a.reshape(3, -1).T))  # noqa: E731 - each pixel's colour vector
        assert pixels(out[i]) == pixels(x[i]) and not np.array_equal(out[i], x[i])
    moved = [np.flatnonzero((out[i] != x[i]).any(axis=0).ravel()) for i in idx[:2]]
    assert not np.array_equal(moved[0], moved[1])  # not one permutation for all
    assert np.array_equal(shuffle_pixels(x, idx, seed=9), out)
    assert not np.array_equal(shuffle_pixels(x, idx, seed=10), out)
    assert np.array_equal(shuffle_pixels(x, np.zeros(0, dtype=np.int64), seed=9), x)


def test_pixel_shuffled_canaries_change_only_their_images_and_are_audited_apart(tmp_path):
    """``canary_kind = "shuffled_pixels"``: the canaries' images are replaced by their shuffled pixels (the
    out-of-distribution kind), every label and every other image is kept, and the canaries get their own rows
    and report section, named by kind."""
    from diffence_plugin.audit.run import run_plan
    from diffence_plugin.audit.stages.prepare import read_inputs

    toy = DEMO_TOY + ["roles.canaries=12", 'roles.canary_kind="shuffled_pixels"', "attacks.art=[]",
                      f"run.out={json.dumps(str(tmp_path / 'c'))}"]
    plan = load_preset("demo", toy)
    plan.defenses = plan.defenses[:1]
    inputs, original = read_inputs(plan), read_inputs(load_preset("demo", DEMO_TOY))
    canaries = inputs.split.canaries
    assert np.array_equal(inputs.y, original.y)
    others = np.setdiff1d(np.arange(len(inputs.x)), canaries)
    assert np.array_equal(inputs.x[others], original.x[others])
    assert all(not np.array_equal(inputs.x[i], original.x[i]) for i in canaries)
    results = run_plan(plan, log=lambda *a: None).results
    block = results["canaries"]
    assert (block["kind"], block["members"], [r["defense"] for r in block["rows"]]) == \
        ("shuffled_pixels", 12, ["undefended", "scenario_1"])
    assert "12 pixel-shuffled (out-of-distribution) members" in (tmp_path / "c" / "report.html").read_text()
    with pytest.raises(ConfigError, match=r"\[roles\].canary_kind must be one of \['flipped_labels', 'shuffled_pixels'\]"):
        load_preset("demo", DEMO_TOY + ['roles.canary_kind="noise"'])


def test_a_plan_with_canaries_audits_them_apart_from_the_average_case(tmp_path):
    """``[roles].canaries`` flips the labels of that many members and non-members, trains the target and the
    references on the flipped labels, keeps the canaries out of the average-case rows and audits them in
    their own rows (LiRA, RMIA and the chosen attack, with changes from the undefended canary row), written to
    results.json and the report."""
    from diffence_plugin.audit.run import run_plan
    from diffence_plugin.audit.stages.prepare import read_inputs

    toy = DEMO_TOY + ["roles.canaries=12", 'attacks.art=["bb_rf"]', f"run.out={json.dumps(str(tmp_path / 'c'))}"]
    plan = load_preset("demo", toy)
    plan.defenses = plan.defenses[:1]
    inputs = read_inputs(plan)
    original = load_preset("demo", DEMO_TOY)
    y0 = read_inputs(original).y
    canaries = inputs.split.canaries
    assert len(canaries) == 24 and np.all(inputs.y[canaries] != y0[canaries])
    others = np.setdiff1d(np.arange(len(y0)), canaries)
    assert np.array_equal(inputs.y[others], y0[others])

    results = run_plan(plan, log=lambda *a: None).results
    assert [r["defense"] for r in results["rows"]] == ["undefended", "scenario_1"]
    assert results["rows"][0]["best"]["nonmembers"] == plan.roles.evaluation
    block = results["canaries"]
    assert (block["kind"], block["members"], block["nonmembers"]) == ("flipped_labels", 12, 12)
    rows = {r["defense"]: r for r in block["rows"]}
    assert list(rows) == ["undefended", "scenario_1"]
    assert rows["undefended"]["best"]["nonmembers"] == 12 and rows["undefended"]["best"]["members"] == 12
    assert rows["scenario_1"]["lira"] is not None and rows["scenario_1"]["rmia"] is not None
    assert "lira" in rows["scenario_1"]["change"] and rows["scenario_1"]["reference_aware"]
    assert "The canaries: 12 flipped-label members" in (tmp_path / "c" / "report.html").read_text()


def test_canaries_that_do_not_fit_are_named(tmp_path):
    """Too many canaries for the members, a single one, or canaries with a loaded target (which never trained
    on their flipped labels) is a plan error naming the field."""
    from diffence_plugin.audit.stages.prepare import read_inputs

    with pytest.raises(ConfigError, match=r"\[roles\]: the member roles need 101 members"):
        load_preset("demo", DEMO_TOY + ["roles.canaries=51"])
    with pytest.raises(ConfigError, match=r"\[roles\].canaries must be 0 or >= 2"):
        load_preset("demo", DEMO_TOY + ["roles.canaries=1"])
    weights = tmp_path / "target.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"\[roles\].canaries makes records \(flipped labels or shuffled pixels\) the target must train on"):
        load_preset("demo", DEMO_TOY + ["roles.canaries=2", "target.train=null",
                                        f"target.weights={json.dumps(str(weights))}"])
    plan = load_preset("demo", DEMO_TOY + ["roles.canaries=50", "members.count=100"])
    assert len(read_inputs(plan).split.canary_members) == 50
