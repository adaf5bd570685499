"""LiRA and RMIA against cases whose answer is known in closed form, and reference-model bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from diffence_plugin.attacks.lira import LiRA, logit_confidence
from diffence_plugin.attacks.metrics import membership_metrics
from diffence_plugin.attacks.references import in_masks, reference_seed
from diffence_plugin.attacks.rmia import RMIA, fit_offline_a, marginal


def test_logit_confidence_is_exact_near_one_and_matches_the_definition():
    probs = np.array([[0.7, 0.2, 0.1], [1.0 - 2e-20, 1e-20, 1e-20], [0.1, 0.3, 0.6]])
    labels = np.array([0, 0, 1])
    got = logit_confidence(probs, labels)
    assert got[0] == pytest.approx(np.log(0.7 / 0.3))
    assert got[1] == pytest.approx(np.log(1.0) - np.log(2e-20))
    assert got[2] == pytest.approx(np.log(0.3 / 0.7))


def _symmetric_references(mu_in, mu_out, s_in, s_out, per_side):
    """References whose IN (OUT) statistics are mu +- s exactly: sample mean mu, known sample variance."""
    r = 2 * per_side
    refs = np.empty((r, mu_in.size))
    mask = np.zeros((r, mu_in.size), dtype=bool)
    signs = np.tile([1.0, -1.0], per_side // 2)
    refs[:per_side] = mu_in + np.outer(signs, s_in)
    refs[per_side:] = mu_out + np.outer(signs, s_out)
    mask[:per_side] = True
    return refs, mask


def test_online_lira_with_per_example_variance_equals_the_gaussian_likelihood_ratio():
    rng = np.random.default_rng(0)
    s = 40
    mu_in, mu_out = rng.normal(3, 1, s), rng.normal(0, 1, s)
    s_in, s_out = rng.uniform(0.5, 2, s), rng.uniform(0.5, 2, s)
    per_side = 8
    refs, mask = _symmetric_references(mu_in, mu_out, s_in, s_out, per_side)
    target = rng.normal(1.5, 2, s)
    # sample std (ddof=1) of +-s repeated per_side times
    sd_in, sd_out = s_in * np.sqrt(per_side / (per_side - 1)), s_out * np.sqrt(per_side / (per_side - 1))
    expected = norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)
    got = LiRA(online=True, global_variance=False).score(target, refs, mask)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_offline_lira_is_the_one_sided_gaussian_test_and_global_variance_is_pooled():
    rng = np.random.default_rng(1)
    s, per_side = 30, 6
    mu_in, mu_out = rng.normal(2, 1, s), rng.normal(0, 1, s)
    sd = np.full(s, 0.7)
    refs, mask = _symmetric_references(mu_in, mu_out, sd, sd, per_side)
    target = rng.normal(0, 1, s)
    pooled = 0.7 * np.sqrt(per_side / (per_side - 1))
    np.testing.assert_allclose(LiRA(online=False, global_variance=True).score(target, refs, mask),
                               norm.logcdf(target, mu_out, pooled), rtol=1e-10)
    np.testing.assert_allclose(LiRA(online=True, global_variance=True).score(target, refs, mask),
                               norm.logpdf(target, mu_in, pooled) - norm.logpdf(target, mu_out, pooled), rtol=1e-10)


def test_augmented_views_add_their_log_likelihood_ratios():
    rng = np.random.default_rng(2)
    s, per_side = 10, 4
    refs_a, mask = _symmetric_references(rng.normal(1, 1, s), rng.normal(0, 1, s), np.ones(s), np.ones(s), per_side)
    refs_b, _ = _symmetric_references(rng.normal(1, 1, s), rng.normal(0, 1, s), np.ones(s), np.ones(s), per_side)
    target = rng.normal(size=(s, 2))
    lira = LiRA(online=True, global_variance=False)
    both = lira.score(target, np.stack([refs_a, refs_b], axis=-1), mask)
    np.testing.assert_allclose(both, lira.score(target[:, 0], refs_a, mask) + lira.score(target[:, 1], refs_b, mask))


def test_lira_reaches_the_bayes_optimal_auc_of_equal_variance_gaussians():
    """Members ~ N(mu_i + d, 1), non-members ~ N(mu_i, 1): the optimal AUC is Phi(d / sqrt(2))."""
    rng = np.random.default_rng(3)
    s, r, d = 2000, 64, 1.0
    base = rng.normal(0, 3, s)  # per-example difficulty, which a global threshold cannot remove
    mask = in_masks(r, s, seed=0)
    refs = base + d * mask + rng.normal(size=(r, s))
    member = rng.random(s) < 0.5
    target = base + d * member + rng.normal(size=s)
    result = membership_metrics("lira", LiRA().score(target, refs, mask)[member],
                                LiRA().score(target, refs, mask)[~member], bootstrap=400)
    optimum = norm.cdf(d / np.sqrt(2))
    low, high = result.ci["auc"]
    assert low - 0.01 <= optimum <= high + 0.01
    assert result.auc > roc_auc_score(member, target) + 0.1  # the raw statistic ignores the per-example shift


def test_null_case_stays_within_its_interval_of_one_half():
    rng = np.random.default_rng(4)
    s, r = 1000, 16
    mask = in_masks(r, s, seed=1)
    base = rng.normal(0, 2, s)
    refs = base + rng.normal(size=(r, s))  # training on a record changes nothing
    member = rng.random(s) < 0.5
    scores = LiRA().score(base + rng.normal(size=s), refs, mask)
    result = membership_metrics("lira", scores[member], scores[~member], bootstrap=400)
    assert result.ci["auc"][0] <= 0.5 <= result.ci["auc"][1]


def test_rmia_counts_population_records_below_the_likelihood_ratio_threshold():
    rng = np.random.default_rng(5)
    r, s, z = 4, 12, 50
    refs_x, refs_z = rng.uniform(0.05, 0.95, (r, s)), rng.uniform(0.05, 0.95, (r, z))
    tx, tz = rng.uniform(0.05, 0.95, s), rng.uniform(0.05, 0.95, z)
    gamma = 1.5
    got = RMIA(gamma=gamma).score(tx, refs_x, None, tz, refs_z)
    px, pz = refs_x.mean(0), refs_z.mean(0)
    brute = np.array([[(tx[i] / px[i]) / (tz[j] / pz[j]) >= gamma for j in range(z)] for i in range(s)]).mean(1)
    np.testing.assert_allclose(got, brute)


def test_rmia_offline_marginal_is_the_linear_approximation():
    refs = np.array([[0.2, 0.4], [0.6, 0.8], [0.9, 0.1]])
    mask = np.array([[True, False], [False, False], [False, True]])
    a = 0.3
    mean_out = np.array([(0.6 + 0.9) / 2, (0.4 + 0.8) / 2])
    np.testing.assert_allclose(marginal(refs, mask, a), ((1 + a) * mean_out + 1 - a) / 2)
    np.testing.assert_allclose(marginal(refs, None, None), refs.mean(0))


def test_rmia_separates_members_and_its_offline_a_is_fitted_on_reference_models():
    rng = np.random.default_rng(6)
    r, s, z = 8, 400, 200
    difficulty = rng.uniform(0.2, 0.8, s + z)
    mask = in_masks(r, s + z, seed=2)
    refs = np.clip(difficulty + 0.15 * mask + rng.normal(0, 0.03, (r, s + z)), 0, 1)
    member = rng.random(s) < 0.5
    target = np.clip(difficulty[:s] + 0.15 * member + rng.normal(0, 0.03, s), 0, 1)
    target_z = np.clip(difficulty[s:] + rng.normal(0, 0.03, z), 0, 1)
    online = RMIA().score(target, refs[:, :s], mask[:, :s], target_z, refs[:, s:], mask[:, s:])
    assert roc_auc_score(member, online) > 0.9
    a = fit_offline_a(refs[:, :s], mask[:, :s], refs[:, s:], mask[:, s:])
    assert 0.0 <= a <= 1.0
    offline = RMIA(offline_a=a).score(target, refs[:, :s], mask[:, :s], target_z, refs[:, s:], mask[:, s:])
    assert roc_auc_score(member, offline) > 0.85


def test_offline_a_falls_back_with_a_warning_when_no_reference_can_stand_in():
    mask = in_masks(2, 20, seed=0)
    refs = np.full((2, 20), 0.5)
    with pytest.warns(UserWarning, match="no reference model can stand in"):
        assert fit_offline_a(refs, mask, refs, mask, default=0.3) == 0.3


def test_bad_attack_inputs_are_named():
    with pytest.raises(ValueError, match="shapes disagree"):
        LiRA().score(np.zeros(3), np.zeros((4, 2)), np.zeros((4, 2), bool))
    with pytest.raises(ValueError, match="no reference model on this side"):
        LiRA().score(np.zeros(2), np.zeros((2, 2)), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="probabilities"):
        RMIA().score(np.full(2, 2.0), np.full((2, 2), 0.5), None, np.full(3, 0.5), np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="pairs"):
        in_masks(3, 10, seed=0)


def test_in_masks_are_balanced_and_seeds_depend_on_index_only():
    mask = in_masks(8, 100, seed=3)
    assert (mask.sum(axis=0) == 4).all()
    np.testing.assert_array_equal(mask, in_masks(8, 100, seed=3))
    assert not np.array_equal(mask, in_masks(8, 100, seed=4))
    assert reference_seed(0, 5) == reference_seed(0, 5) != reference_seed(0, 6)


def test_reference_models_are_cached_and_a_damaged_entry_is_retrained(tmp_path, digits):
    import torch

    from diffence_plugin.attacks.references import ReferenceRecipe, train_references

    x, y = digits
    base = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=1, batch_size=64)
    calls = []
    recipe = ReferenceRecipe(train=lambda a, b, s: calls.append(s) or base.train(a, b, s), key=base.key,
                             build=base.build)
    first = train_references(recipe, x[:100], y[:100], 2, seed=0, cache=tmp_path, progress=False)
    again = train_references(recipe, x[:100], y[:100], 2, seed=0, cache=tmp_path, progress=False)
    assert len(calls) == 2  # the second run trained nothing
    for a, b in zip(first.models, again.models):
        for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.equal(pa, pb)
    np.testing.assert_array_equal(first.in_mask, again.in_mask)
    next(tmp_path.glob("*.safetensors")).write_bytes(b"torn")
    train_references(recipe, x[:100], y[:100], 2, seed=0, cache=tmp_path, progress=False)
    assert len(calls) == 3  # only the damaged one was trained again
    train_references(recipe, x[:100], y[:100], 2, seed=1, cache=tmp_path, progress=False)
    assert len(calls) == 5  # another seed is another key


def test_an_attack_is_scored_on_all_its_records_at_once():
    """LiRA's global variance pools over the candidates scored together; members and non-members scored
    in separate calls would each get their own variance and incomparable scores (a bug this guards)."""
    from diffence_plugin.attacks.scoring import Sets, scored_attack

    rng = np.random.default_rng(0)
    records = rng.permutation(600)
    sets = Sets(fit=(records[:50], records[50:100]), select=(records[100:150], records[150:200]),
                evaluation=(records[200:350], records[350:500]), population=np.zeros(0, dtype=np.int64))
    members = np.isin(np.arange(600), np.concatenate([records[:50], records[100:150], records[200:350]]))
    calls = []

    def score(idx):  # a statistic whose scale comes from the whole batch, like a pooled variance
        calls.append(len(idx))
        raw = members[idx] * 1.0 + rng.normal(0, 1, len(idx))
        return (raw - raw.mean()) / raw.std()

    result = scored_attack("pooled", score, sets, bootstrap=0)
    assert calls == [500] and result.auc > 0.65


def _label_world(seed: int = 0, q_high: float = 0.9):
    """Records whose OUT models are right with probability q (their difficulty) and IN models always; the target
    is right on every member and on a non-member with its q. Answers put 0.7 on the predicted class."""
    from diffence_plugin.attacks.attacker import AttackerView
    from diffence_plugin.attacks.roles import ROLES, membership_split

    rng = np.random.default_rng(seed)
    total, k, r = 1200, 3, 8
    split = membership_split(total, 500, 50, 100, 200, seed=seed)
    y = rng.integers(0, k, total)
    q = rng.uniform(0.0, q_high, total)

    def answers(right):
        pred = np.where(right, y, (y + 1 + rng.integers(0, k - 1, y.shape)) % k)
        probs = np.full(pred.shape + (k,), 0.3 / (k - 1))
        np.put_along_axis(probs, pred[..., None], 0.7, axis=-1)
        return probs

    mask = in_masks(r, total, seed=seed)
    view = AttackerView(answers(mask | (rng.random((r, total)) < q)), mask, np.arange(total), aware=True)
    member = np.isin(np.arange(total), split.members)
    target = answers(member | (rng.random(total) < q))
    released = {role: target[getattr(split, role)] for role in ROLES}
    return released, y, split, view


def test_lira_on_the_labels_reads_nothing_but_the_labels_and_is_lira_on_a_labels_only_release():
    """The label view of a release that keeps every label but flattens its scores (HAMP's output kind) scores
    exactly as that of the soft release, and as LiRA on the ``labels_only`` release against references
    reduced to labels: a floor no label-keeping release can hide below."""
    from diffence_plugin.attacks.attacker import top1
    from diffence_plugin.attacks.families import Context, LabelViewFamily, LiRAFamily

    released, y, split, view = _label_world()
    flat = {role: 0.2 * top1(p) + 0.8 / p.shape[1] for role, p in released.items()}
    soft = {a.attack: a for a in LabelViewFamily().run(Context(released, y, split, bootstrap=0, view=view))}
    flattened = {a.attack: a for a in LabelViewFamily().run(Context(flat, y, split, bootstrap=0, view=view))}
    only = LiRAFamily().run(Context({r: top1(p) for r, p in released.items()}, y, split, bootstrap=0,
                                    view=view.labels()))
    assert sorted(soft) == sorted(f"labels_{a.attack}" for a in only) and len(only) == 4
    for a in only:
        name = f"labels_{a.attack}"
        assert soft[name].auc == flattened[name].auc == a.auc
        assert soft[name].selection_auc == flattened[name].selection_auc == a.selection_auc
    assert max(a.auc for a in only) > 0.6  # the labels carry the members' correctness
    # no difficulty at all (every OUT answer wrong, every IN answer right): the labels give membership away
    released, y, split, view = _label_world(seed=1, q_high=0.0)
    perfect = LabelViewFamily().run(Context(released, y, split, bootstrap=0, view=view))
    assert max(a.auc for a in perfect) == 1.0


def test_the_label_view_is_in_every_audit_with_references_unless_turned_off():
    from diffence_plugin.attacks.families import plan_families
    from diffence_plugin.audit.plan import load_preset

    names = [f.name for f in plan_families(load_preset("demo").attacks)]
    assert names[:4] == ["threshold", "lira", "rmia", "labels"]
    assert "labels" not in [f.name for f in plan_families(load_preset("demo", overrides=["attacks.labels=false"]).attacks)]
    assert "labels" not in [f.name for f in plan_families(load_preset("demo", overrides=["attacks.references=0"]).attacks)]
