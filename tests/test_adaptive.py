"""Adaptive attackers and the deterministic mode that must hold against them: near-duplicate keys, the
secret seed, label-only noise robustness, recovery statistics, and thread-safe shared reconstruction."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffence_plugin import Diffence
from diffence_plugin.attacks.adaptive import (
    PERTURBATIONS,
    averaged_release,
    combine,
    input_relevance,
    label_only_lira,
    label_survival,
    local_contrast,
    perturbed_copies,
    recovery,
)
from diffence_plugin.attacks.metrics import membership_metrics
from diffence_plugin.randomness import canonical, input_keys, lsh_buckets

from .conftest import LinearClassifier, make_reconstructor


@pytest.fixture(scope="module")
def rec():
    return make_reconstructor()


@pytest.fixture(scope="module")
def grid_images():
    """Images on the 17 grey levels of sklearn's digits (k / 16), with zero pixels."""
    gen = torch.Generator().manual_seed(3)
    return (torch.randint(0, 17, (6, 1, 8, 8), generator=gen) * (torch.rand(6, 1, 8, 8, generator=gen) > 0.4)) / 16


# ---- perturbations -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
def test_perturbed_copies_change_what_each_kind_says(grid_images, kind):
    x = grid_images.numpy()
    copies = perturbed_copies(x, kind, 5, seed=0)
    assert copies.shape == (5, *x.shape) and copies.dtype == np.float32
    assert copies.min() >= 0 or kind == "zero_sign" and (copies[copies < 0] == 0).all()
    assert copies.max() <= 1
    diff = copies - x[None]
    changed = (copies.view(np.uint32) != x[None].view(np.uint32)).reshape(5, len(x), -1).sum(-1)
    if kind == "exact":
        assert (changed == 0).all()
    elif kind == "zero_sign":
        assert (diff == 0).all() and (changed >= 1).all()  # same values, other bytes
        assert np.signbit(copies[copies == 0]).any()
    elif kind == "ulp":
        assert (changed == 1).all() and 0 < np.abs(diff).max() < 1e-7
    elif kind == "grey_level":
        assert (changed == 1).all()
        np.testing.assert_allclose(np.abs(diff).reshape(5, len(x), -1).sum(-1), 1 / 255, atol=1e-6)
    elif kind == "flat":  # one pixel per copy, the five flattest of each record, each once
        assert (changed == 1).all()
        np.testing.assert_allclose(np.abs(diff).reshape(5, len(x), -1).sum(-1), 1 / 255, atol=1e-6)
        moved = np.abs(diff).reshape(5, len(x), -1).argmax(-1).T
        contrast = local_contrast(x)
        assert all(len(set(m)) == 5 for m in moved)
        np.testing.assert_array_equal(np.sort(np.take_along_axis(contrast, moved, 1)), np.sort(contrast)[:, :5])
    else:
        assert (changed > 20).all() and 0.3 / 255 < diff.std() < 1.5 / 255


# ---- keys --------------------------------------------------------------------------------------------------

def test_quantised_key_ignores_sub_level_changes_and_raw_key_does_not(grid_images):
    x = grid_images
    for kind in ("zero_sign", "ulp", "grey_level", "gaussian"):
        copy = torch.from_numpy(perturbed_copies(x.numpy(), kind, 1, seed=1)[0])
        assert input_keys(copy, "quantised", levels=16) == input_keys(x, "quantised", levels=16), kind
        assert all(a != b for a, b in zip(input_keys(copy, "raw"), input_keys(x, "raw"))), kind
        torch.testing.assert_close(canonical(copy, 16), x, rtol=0, atol=0)
    neg_zero = x.clone()
    neg_zero[x == 0] = -0.0
    assert input_keys(neg_zero, "quantised", levels=16) == input_keys(x, "quantised", levels=16)
    a_level = x.clone()
    a_level[0, 0, 0, 0] = 1.0 - x[0, 0, 0, 0]  # a whole grey-level change is a different query
    assert input_keys(a_level, "quantised", levels=16)[0] != input_keys(x, "quantised", levels=16)[0]


def test_flat_copies_of_one_grey_level_change_the_quantised_key(grid_images):
    """What the flat-region attack exploits: one grey level on one pixel is a new quantised key."""
    x = grid_images.numpy()
    base = input_keys(grid_images, "quantised", levels=16)
    for copy in perturbed_copies(x, "flat", 8, size=1 / 16, seed=0):
        assert all(a != b for a, b in zip(input_keys(torch.from_numpy(copy), "quantised", levels=16), base))


def test_lsh_key_is_stable_within_its_radius_and_moves_beyond_it():
    """Share of Gaussian-perturbed copies keeping the LSH key: near 1 for tiny changes, lower for large ones,
    and at least the bound 1 - 0.8 * projections * d / width for pooled-image L2 changes d."""
    gen = torch.Generator().manual_seed(0)
    x = torch.round(torch.rand(200, 1, 8, 8, generator=gen) * 255) / 255
    base = lsh_buckets(x, 255, 4, 2.0, seed=9)
    shares = {}
    for sd in (1 / 255, 8 / 255, 64 / 255):
        y = (x + sd * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        moved = lsh_buckets(y, 255, 4, 2.0, seed=9)
        shares[sd] = float((moved == base).all(-1).double().mean())
        pooled = torch.nn.functional.adaptive_avg_pool2d(canonical(y, 255) - x, 4).flatten(1).norm(dim=1)
        bound = 1 - 0.8 * 4 * float(pooled.mean()) / 2.0
        assert shares[sd] >= bound - 3 * np.sqrt(0.25 / 200), (sd, shares[sd], bound)
    assert shares[1 / 255] >= 0.97 and shares[64 / 255] < shares[1 / 255]
    other_secret = lsh_buckets(x, 255, 4, 2.0, seed=10)
    assert not torch.equal(other_secret, base)  # the bucket edges come from the secret seed


@pytest.mark.parametrize("key", ["quantised", "lsh"])
def test_near_duplicates_get_the_identical_release(rec, grid_images, key):
    """A selected reconstruction is released identically; where no reconstruction kept the label, the model's
    own output on the query is released (no randomness there to average away)."""
    model = LinearClassifier().eval()
    defense = Diffence(rec, n=4, t=40, k=10, scenario=3, seed=5, key=key, levels=16)
    first = defense.defend_detailed(model, grid_images)
    assert (first.index >= 0).sum() >= 3
    for kind in ("zero_sign", "ulp", "grey_level", "gaussian"):
        copy = torch.from_numpy(perturbed_copies(grid_images.numpy(), kind, 1, seed=2)[0])
        again = defense.defend_detailed(model, copy)
        torch.testing.assert_close(again.index, first.index, msg=kind)
        chosen = first.index >= 0
        torch.testing.assert_close(again.probs[chosen], first.probs[chosen], rtol=0, atol=1e-6, msg=kind)
        with torch.no_grad():
            torch.testing.assert_close(again.probs[~chosen], torch.softmax(model(copy[~chosen]), -1), msg=kind)
    raw = Diffence(rec, n=4, t=40, k=10, scenario=3, seed=5, key="raw", levels=16)
    copy = torch.from_numpy(perturbed_copies(grid_images.numpy(), "ulp", 1, seed=2)[0])
    assert not torch.allclose(raw.defend(model, copy), raw.defend(model, grid_images), atol=1e-4)


def test_the_stable_pick_is_a_setting_that_is_saved_checked_and_moves_fewer_releases(rec, grid_images, tmp_path):
    """``pick = "stable"`` through the defense: saved and loaded with it, refused when unknown, and on LSH-keyed
    near-duplicates whose candidates cross the label boundary it changes no more picks than "rank"."""
    model = LinearClassifier().eval()
    stable = Diffence(rec, n=16, t=40, k=10, scenario=3, seed=5, key="lsh", levels=16, pick="stable")
    stable.save_pretrained(tmp_path / "d")
    assert Diffence.from_pretrained(tmp_path / "d").config.pick == "stable"
    with pytest.raises(ValueError, match=r"pick must be one of \('rank', 'stable'\), got 'first'"):
        Diffence(rec, n=2, scenario=3, pick="first")
    gen = torch.Generator().manual_seed(4)
    x = (torch.randint(0, 17, (48, 1, 8, 8), generator=gen) * (torch.rand(48, 1, 8, 8, generator=gen) > 0.4)) / 16
    copies = torch.from_numpy(perturbed_copies(x.numpy(), "flat", 4, size=1 / 16, seed=1))
    moved = {}
    for pick in ("rank", "stable"):
        defense = stable.with_config(pick=pick)
        first = defense.defend_detailed(model, x)
        with torch.no_grad():
            assert torch.equal(first.labels, model(x).argmax(-1))
        moved[pick] = sum(int((defense.defend_detailed(model, c).index != first.index).sum()) for c in copies)
    assert 0 < moved["stable"] <= moved["rank"], moved


def test_the_key_changes_no_label(rec, images):
    """Accuracy and label preservation do not depend on the key: every release keeps the model's label."""
    model = LinearClassifier().eval()
    with torch.no_grad():
        labels = model(images).argmax(-1)
    off_grid = (images + 0.3 / 255).clamp(0, 1)  # the label is the model's on the input as given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in ("raw", "quantised", "lsh"):
            for x, want in ((images, labels), (off_grid, model(off_grid).argmax(-1))):
                out = Diffence(rec, n=4, t=40, k=10, scenario=3, seed=5, key=key).defend(model, x)
                assert torch.equal(out.argmax(-1), want), key


def test_inputs_off_the_declared_grid_are_warned_about(rec, grid_images):
    model = LinearClassifier().eval()
    with pytest.warns(UserWarning, match="not on the grid of levels=255.*sit on a grid of 16 levels: set levels = 16"):
        Diffence(rec, n=2, t=40, k=10, scenario=3, seed=5).defend(model, grid_images)  # digits need levels=16
    continuous = torch.rand(grid_images.shape, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="the data look continuous.*key = 'lsh'.*key = 'raw'"):
        Diffence(rec, n=2, t=40, k=10, scenario=3, seed=5).defend(model, continuous)  # advice that fits them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Diffence(rec, n=2, t=40, k=10, scenario=3, seed=5, levels=16).defend(model, grid_images)


# ---- the secret seed ---------------------------------------------------------------------------------------

def test_seed_defaults_to_a_fresh_secret_and_save_pretrained_keeps_it(rec, images, tmp_path):
    model = LinearClassifier().eval()
    a, b = Diffence(rec, n=3, scenario=3), Diffence(rec, n=3, scenario=3)
    assert a.config.seed != b.config.seed and min(a.config.seed, b.config.seed) > 2**32
    assert not torch.allclose(a.defend(model, images), b.defend(model, images))
    a.save_pretrained(tmp_path / "defense")
    assert (tmp_path / "defense" / "diffence.json").stat().st_mode & 0o077 == 0  # owner-only: it holds a secret
    loaded = Diffence.from_pretrained(tmp_path / "defense")
    assert loaded.config == a.config
    torch.testing.assert_close(loaded.defend(model, images), a.defend(model, images))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        b.save_pretrained(tmp_path / "defense")
    assert Diffence.from_pretrained(tmp_path / "defense").config.seed == a.config.seed  # nothing replaced


def test_saved_defense_files_are_checked(rec, tmp_path):
    Diffence(rec, n=3, scenario=3).save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "diffence.json").write_text('{"format": "diffence-plugin/defense", "config": {"n": 3, "x": 1}}')
    with pytest.raises(ValueError, match=r"unknown Diffence setting\(s\) \['x'\]"):
        Diffence.from_pretrained(tmp_path / "d")
    (tmp_path / "d" / "diffence.json").write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Diffence.from_pretrained(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        Diffence.from_pretrained(tmp_path / "nowhere")


def test_a_small_fixed_seed_is_warned_about_outside_tests(rec, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    with pytest.warns(UserWarning, match="seed=0 is small enough to guess"):
        Diffence(rec, n=2, scenario=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Diffence(rec, n=2, scenario=3)  # a drawn secret
        Diffence(rec, n=2, scenario=3, seed=2**40 + 7)


# ---- "mean" has no image; shared reconstruction is thread safe ----------------------------------------------

def test_purify_refuses_the_mean_scenario(rec, images):
    from diffence_plugin.adapters.art import DiffencePreprocessor

    model = LinearClassifier().eval()
    mean = Diffence(rec, n=3, scenario="mean", seed=5)
    with pytest.raises(ValueError, match='scenario "mean"'):
        mean.purify(model, images)
    with pytest.raises(ValueError, match='scenario "mean"'):
        DiffencePreprocessor(mean, model)
    assert (mean.defend_detailed(model, images).index == -2).all()  # MEAN, not ORIGINAL (-1)


def test_defenses_with_different_strides_share_a_reconstructor_across_threads(images):
    rec = make_reconstructor(seed=4)
    model = LinearClassifier().eval()
    defenses = [Diffence(rec, n=3, t=40, k=k, scenario=3, seed=5) for k in (10, 20, 40, 10, 20, 40)]
    expected = [d.defend(model, images) for d in defenses]
    results: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(defenses))}
    barrier = threading.Barrier(len(defenses))

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(4):
            results[i].append(defenses[i].defend(model, images))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(defenses))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, outs in results.items():
        assert len(outs) == 4
        for out in outs:
            torch.testing.assert_close(out, expected[i], rtol=0, atol=1e-6)


# ---- the adaptive attacks ----------------------------------------------------------------------------------

def test_averaging_fresh_noise_converges_and_identical_answers_do_not_move():
    rng = np.random.default_rng(0)
    truth = np.array([[0.7, 0.3], [0.2, 0.8]])

    def noisy(batch):  # a release whose noise is fresh on every query
        return truth[np.arange(len(batch)) % 2] + rng.normal(0, 0.1, (len(batch), 2))

    copies = np.zeros((400, 2, 1, 2, 2), dtype=np.float32)
    np.testing.assert_allclose(averaged_release(noisy, copies), truth, atol=0.03)  # sd 0.1 / sqrt(400) = 0.005
    fixed = averaged_release(lambda b: truth[np.arange(len(b)) % 2], copies)
    np.testing.assert_allclose(fixed, truth, rtol=0, atol=1e-12)


def test_flat_copies_visit_each_pixel_once_least_relevant_first_then_with_twice_the_step():
    x = np.zeros((2, 1, 3, 3), dtype=np.float32)
    x[1, 0, 2, 2] = 1.0  # at 1 a step up is impossible: the copy steps down
    relevance = np.tile(np.arange(9.0)[::-1], (2, 1))  # pixel 8 least relevant, then 7, ...
    copies = perturbed_copies(x, "flat", 11, size=1 / 16, seed=0, relevance=relevance)
    diff = (copies - x[None]).reshape(11, 2, 9)
    assert ((diff != 0).sum(-1) == 1).all()
    assert list(np.abs(diff[:, 0]).argmax(-1)) == [8, 7, 6, 5, 4, 3, 2, 1, 0, 8, 7]
    np.testing.assert_allclose(diff[:9, 0].sum(-1), 1 / 16)
    np.testing.assert_allclose(diff[9:, 0].sum(-1), 2 / 16)  # the second pass: twice the step
    assert diff[0, 1, 8] == pytest.approx(-1 / 16)
    with pytest.raises(ValueError, match="one value per pixel"):
        perturbed_copies(x, "flat", 2, seed=0, relevance=relevance[:, :4])


def test_input_relevance_is_the_gradient_of_the_labels_log_probability():
    """For logits W x + b, d log p_y / dx = W_y - sum_k p_k W_k (closed form)."""
    model = LinearClassifier(features=16, classes=3).eval()
    x = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1])
    w = model.linear.weight.detach().double().numpy()
    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(x)).double(), -1).numpy()
    expected = np.abs(w[y] - p @ w)
    # the gradient is taken in float32: an entry that cancels to about 1e-3 keeps float32's absolute error
    # (terms of size ~0.1-1, eps 1.2e-7), not its relative one (seen on the AMD host: 3.4e-5 relative)
    np.testing.assert_allclose(input_relevance(model, x, y, batch=2), expected, rtol=1e-5, atol=1e-6)


def _keyed_noise_release(shift: np.ndarray, sd: float):
    """A deterministic defense keyed by the query's raw bytes, for records whose true-label logit is ``shift``
    (one per record, the batch holding copies of the records in order): logit plus Gaussian noise drawn from
    a hash of the query. The same query gets the same answer; a changed one gets fresh noise."""
    import hashlib

    def release(batch):
        noise = np.array([np.random.default_rng(int.from_bytes(hashlib.sha256(img.tobytes()).digest()[:8], "little"))
                          .normal(0, sd) for img in batch])
        p = 1 / (1 + np.exp(-(shift[np.arange(len(batch)) % len(shift)] + noise)))
        return np.stack([p, 1 - p], -1)
    return release


def test_flat_copies_do_nothing_to_an_undefended_model_and_take_back_fresh_noise(digits):
    """The attack's two controls: on the undefended model the average of flat copies scores like the single
    query (the classifier does not see them); on a raw-keyed noisy release it recovers what the noise hid.
    There, member logits 2 and non-member logits 1 under noise of sd 2 give the single query an AUC of
    Phi(1 / sqrt(8)) = 0.638; 16 fresh draws averaged shrink the noise and raise it."""
    from diffence_plugin.data import DigitsMLP
    from diffence_plugin.defenses.training import train_classifier

    x, y = digits
    order = np.random.default_rng(0).permutation(len(x))
    members, nonmembers = order[:300], order[300:600]
    model = train_classifier(DigitsMLP(), x[members], y[members], epochs=40, seed=0, progress=False).eval()

    def softmax(batch):
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(np.ascontiguousarray(batch))).double(), -1).numpy()

    def score(release, records, labels, copies):  # logit of the averaged true-label probability
        queries = perturbed_copies(x[records], "flat", copies, size=1 / 16, seed=3) if copies else x[records][None]
        p = np.clip(averaged_release(release, queries)[np.arange(len(records)), labels], 1e-12, 1 - 1e-12)
        return np.log(p) - np.log1p(-p)

    def attack(release, copies):
        return membership_metrics(f"flat{copies}", score(release, members, y[members], copies),
                                  score(release, nonmembers, y[nonmembers], copies))

    plain, flat = attack(softmax, 0), attack(softmax, 16)
    assert plain.auc > 0.55 and abs(recovery(flat, plain, bootstrap=200)["auc_change"]) < 0.01
    label0 = np.zeros(300, dtype=np.int64)
    member, nonmember = _keyed_noise_release(np.full(300, 2.0), 2.0), _keyed_noise_release(np.full(300, 1.0), 2.0)
    single = membership_metrics("single", score(member, members, label0, 0), score(nonmember, nonmembers, label0, 0))
    averaged = membership_metrics("flat16", score(member, members, label0, 16),
                                  score(nonmember, nonmembers, label0, 16))
    assert abs(single.auc - norm.cdf(1 / np.sqrt(8))) < 0.06
    took = recovery(averaged, single, bootstrap=200)
    assert took["auc_change"] > 0.1 and took["auc_ci"][0] > 0, took


def test_label_survival_matches_its_closed_form():
    """Label = (mean pixel > 0.5); a record at mean m keeps its label under N(0, s^2) pixel noise with
    probability Phi(|m - 0.5| / (s / sqrt(D))) (no clipping: pixels stay inside [0, 1])."""
    d, s = 16, 0.05
    m = np.array([0.52, 0.5 + 0.0125, 0.48, 0.55])
    x = np.broadcast_to(m[:, None, None, None], (4, 1, 4, 4)).astype(np.float32)
    y = (m > 0.5).astype(int)

    def labels_of(batch):
        up = batch.reshape(len(batch), -1).mean(-1) > 0.5
        return np.stack([~up, up], -1).astype(float)

    survival = label_survival(labels_of, x, y, sigma=s, queries=4000, seed=0)
    expected = norm.cdf(np.abs(m - 0.5) / (s / np.sqrt(d)))
    np.testing.assert_allclose(survival, expected, atol=4 * np.sqrt(0.25 / 4000))


def test_label_only_lira_separates_members_whose_survival_is_higher():
    rng = np.random.default_rng(1)
    r, s, q = 16, 200, 50
    in_mask = rng.random((r, s)) < 0.5
    refs = np.clip(rng.normal(0.6 + 0.2 * in_mask, 0.05), 0, 1)
    member = rng.random(s) < 0.5
    target = np.clip(rng.normal(0.6 + 0.2 * member, 0.05), 0, 1)
    scores = label_only_lira(target, refs, in_mask, q)
    assert membership_metrics("x", scores[member], scores[~member]).auc > 0.95


def test_recovery_of_an_attack_against_itself_is_zero_and_combine_uses_the_informative_score():
    rng = np.random.default_rng(2)
    m, n = rng.normal(1, 1, 300), rng.normal(0, 1, 300)
    single = membership_metrics("a", m, n)
    same = recovery(single, single, bootstrap=200)
    assert same["auc_change"] == 0 and same["auc_ci"] == [0, 0] and same["tpr@0.01_change"] == 0
    better = membership_metrics("b", m + 1.0, n)
    up = recovery(better, single, bootstrap=200)
    assert up["auc_change"] > 0 and up["auc_ci"][0] > 0
    fm = np.stack([rng.normal(1.5, 1, 200), rng.normal(0, 1, 200)], -1)
    fn = np.stack([rng.normal(0, 1, 200), rng.normal(0, 1, 200)], -1)
    score = combine(fm, fn)
    em = np.stack([rng.normal(1.5, 1, 300), rng.normal(0, 1, 300)], -1)
    en = np.stack([rng.normal(0, 1, 300), rng.normal(0, 1, 300)], -1)
    assert membership_metrics("c", score(em), score(en)).auc > 0.8
