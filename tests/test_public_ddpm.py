"""The public-data diffusion model (issue 26 §2, the paper's Table 5): ``[roles].public`` non-members set aside
as unlabeled public data, and ``[diffusion].data = "public"``, a DDPM trained on every record that is no
evaluation, canary or attacker record, for the defender and (it is public) the attacker."""

from __future__ import annotations

import numpy as np
import pytest

from diffence_plugin.attacks.roles import ROLES, membership_split, roles_from_members
from diffence_plugin.audit.plan import ConfigError, load_preset
from diffence_plugin.audit.stages.prepare import ddpm_records

from .test_engine import DEMO_TOY

SCORED_OR_ATTACKER = ROLES[2:] + ("population", "attacker_pool", "canary_members", "canary_nonmembers")


@pytest.mark.parametrize("draw", ["with_roles", "separate"])
def test_public_data_holds_no_evaluation_canary_or_attacker_record_and_leaves_the_roles_unchanged(draw):
    """``public_data`` is the public non-members, the defender's known records and the members in no other
    role, and none of the records any figure is scored on or the attacker owns; setting records aside as
    public changes no role but the attacker's leftover pool, which loses exactly them."""
    members = np.random.default_rng(0).permutation(1000)[:300]

    def make(public: int):
        if draw == "with_roles":
            return membership_split(1000, 300, 20, 20, 100, seed=3, population=50, canaries=10, public=public)
        return roles_from_members(members, 1000, 20, 20, 100, 50, seed=3, canaries=10, public=public)

    plain, split = make(0), make(200)
    data = set(split.public_data.tolist())
    for role in SCORED_OR_ATTACKER:
        assert not data & set(getattr(split, role).tolist()), role
    spare = set(split.members.tolist()) - set(np.concatenate([getattr(split, r) for r in ROLES[::2]] +
                                                               [split.canary_members]).tolist())
    assert len(spare) == 300 - 20 - 20 - 100 - 10
    expected = set(split.public.tolist()) | set(split.defender_members.tolist()) | \
        set(split.defender_nonmembers.tolist()) | spare
    assert data == expected and len(split.public) == 200 and len(split.public_data) == 200 + 40 + 150
    assert not set(split.public.tolist()) & set(split.members.tolist())
    for role in ROLES + ("population", "canary_members", "canary_nonmembers"):
        assert np.array_equal(getattr(split, role), getattr(plain, role)), role
    assert np.array_equal(plain.attacker_pool[200:], split.attacker_pool)
    assert np.array_equal(make(200).public_data, split.public_data)  # seeded
    with pytest.raises(ValueError, match="non-overlapping samples|non-member roles need"):
        make(700)


def test_the_ddpm_trains_on_the_members_or_on_the_public_data_and_bad_settings_are_named(tmp_path):
    """``ddpm_records``: the members by default, ``public_data`` with ``data = "public"``; an unknown value, a
    negative count, and "public" beside a loaded diffusion model are refused with the field's name."""
    members = load_preset("demo", DEMO_TOY + ["roles.public=200"])
    public = load_preset("demo", DEMO_TOY + ["roles.public=200", 'diffusion.data="public"'])
    split = membership_split(1797, 100, 10, 10, 30, seed=0, population=20, public=200)
    assert np.array_equal(ddpm_records(members, split), split.members)
    assert np.array_equal(ddpm_records(public, split), split.public_data)
    with pytest.raises(ConfigError, match=r"\[diffusion\].data must be one of \['members', 'public'\], got 'all'"):
        load_preset("demo", DEMO_TOY + ['diffusion.data="all"'])
    with pytest.raises(ConfigError, match=r"\[roles\].public must be >= 0, got -1"):
        load_preset("demo", DEMO_TOY + ["roles.public=-1"])
    (tmp_path / "ddpm").mkdir()
    with pytest.raises(ConfigError, match=r'\[diffusion\].data = "public" trains a diffusion model'):
        load_preset("demo", DEMO_TOY + ['diffusion.data="public"', f'diffusion.path="{tmp_path / "ddpm"}"'])


def test_the_public_preset_at_full_size_trains_on_31000_records_none_of_them_scored(tmp_path):
    """presets/cifar10-public.toml's split of CIFAR-10's 50,000 training images: 30,000 public non-members and
    the defender's 1,000 known records, no evaluation or attacker record, and 9,500 records left in the
    attacker's pool (its references' fill and, for the members-only comparison, its DDPM's 5,000)."""
    import json

    from diffence_plugin.audit.stages.prepare import build_split

    plan = load_preset("cifar10-public", [f"data.folder={json.dumps(str(tmp_path))}"])
    split = build_split(plan, 50_000)
    records = ddpm_records(plan, split)
    assert len(records) == 31_000 and len(split.attacker_pool) == 9_500
    assert len(split.attacker_pool) >= plan.attacks.attacker_ddpm_records + 500
    for role in SCORED_OR_ATTACKER:
        assert not np.intersect1d(records, getattr(split, role)).size, role
