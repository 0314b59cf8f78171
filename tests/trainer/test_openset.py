import math

import numpy as np
import pytest

from trainer.openset import choose_threshold, point_at, review_curve


def phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def analytic_precision(t, u=0.1, acc=0.9):
    """Known photos: correct ~ N(3, 1) (share acc), wrong ~ N(0, 1); unknown ~ N(-0.5, 1)."""
    filed_c = acc * (1 - phi(t - 3))
    filed_w = (1 - acc) * (1 - phi(t))
    filed_u = 1 - phi(t + 0.5)
    return (1 - u) * filed_c / ((1 - u) * (filed_c + filed_w) + u * filed_u)


def synthetic(n_known=20000, n_unknown=20000, acc=0.9, seed=0):
    rng = np.random.default_rng(seed)
    correct = rng.random(n_known) < acc
    known = np.where(correct, rng.normal(3, 1, n_known), rng.normal(0, 1, n_known))
    unknown = rng.normal(-0.5, 1, n_unknown)
    return known, correct, unknown


@pytest.mark.parametrize("target", [0.95, 0.98, 0.99])
def test_threshold_gives_intended_precision(target):
    known, correct, unknown = synthetic()
    curve = review_curve(known, correct, unknown, unknown_share=0.1)
    choice = choose_threshold(curve, target)
    assert choice.met
    # the precision the threshold really gives on the distribution (not just on the sample)
    true_precision = analytic_precision(choice.point.threshold)
    assert abs(true_precision - target) < 0.004
    # and it is the least-review threshold: the analytic threshold for the target is (almost) the same
    ts = np.linspace(-2, 6, 8001)
    t_star = ts[np.argmax([analytic_precision(t) >= target for t in ts])]
    assert abs(choice.point.threshold - t_star) < 0.08
    # review rates at that threshold match the distributions
    assert abs(choice.point.review_unknown - phi(choice.point.threshold + 0.5)) < 0.01


def test_curve_counts_exactly():
    # 4 known (3 correct), 2 unknown, unknown share 50%: check every point by hand
    known = np.array([0.9, 0.8, 0.3, 0.1])
    correct = np.array([True, True, False, True])
    unknown = np.array([0.85, 0.2])
    curve = review_curve(known, correct, unknown, unknown_share=0.5)
    assert [p.threshold for p in curve] == [0.1, 0.2, 0.3, 0.8, 0.85, 0.9]
    p = point_at(curve, 0.3)  # files 0.9, 0.8, 0.3 (known) and 0.85 (unknown)
    assert p.review_known == pytest.approx(0.25) and p.review_unknown == pytest.approx(0.5)
    assert p.precision == pytest.approx(0.5 * 2 / 4 / (0.5 * 3 / 4 + 0.5 * 1 / 2))
    top = point_at(curve, 0.9)
    assert top.precision == pytest.approx(1.0) and top.review_unknown == pytest.approx(1.0)


def test_unreachable_target_is_flagged():
    known = np.array([1.0, 2.0, 3.0])
    correct = np.array([True, False, False])  # the most confident photos are wrong
    choice = choose_threshold(review_curve(known, correct, None), 0.99)
    assert not choice.met
    assert choice.point.precision == pytest.approx(1 / 3) or choice.point.precision < 0.99


def test_without_unknowns_precision_is_top1_of_filed():
    known = np.array([0.1, 0.5, 0.7, 0.9])
    correct = np.array([False, True, True, True])
    curve = review_curve(known, correct, None)
    assert curve[0].precision == pytest.approx(0.75) and curve[1].precision == pytest.approx(1.0)
    assert choose_threshold(curve, 0.98).point.threshold == 0.5
    assert all(np.isnan(p.review_unknown) for p in curve)


def test_held_out_estimate_measures_each_species_with_a_threshold_chosen_without_it():
    from trainer.openset import held_out_estimate

    known, correct, _ = synthetic()
    rng = np.random.default_rng(3)
    easy, hard = rng.normal(-2.0, 1, 5000), rng.normal(1.0, 1, 5000)  # "hard" unknowns look known
    est = held_out_estimate(known, correct, np.concatenate([easy, hard]), ["easy"] * 5000 + ["hard"] * 5000,
                            unknown_share=0.1, target_precision=0.98)
    easy_t, hard_t = est["per_species"]["easy"]["threshold"], est["per_species"]["hard"]["threshold"]
    # held out "easy": the threshold was chosen against "hard" unknowns, so it is stricter
    assert easy_t > hard_t
    assert est["per_species"]["easy"]["review_unknown"] == pytest.approx(phi(easy_t + 2.0), abs=0.01)
    assert est["per_species"]["hard"]["review_unknown"] == pytest.approx(phi(hard_t - 1.0), abs=0.01)
    # choosing against easy unknowns only, the hard ones break the precision target: the estimate shows it
    assert est["per_species"]["hard"]["precision"] < 0.97
    assert est["review_unknown"] == pytest.approx(np.mean([v["review_unknown"] for v in est["per_species"].values()]), abs=1e-4)


def test_recommended_threshold_sits_between_observed_scores_with_the_same_decisions():
    from trainer.openset import between

    known = np.array([0.2, 0.5, 0.9, 0.95])
    correct = np.array([False, True, True, True])
    curve = review_curve(known, correct, np.array([0.3]), unknown_share=0.1)
    p = choose_threshold(curve, 0.99).point
    assert p.threshold == 0.5
    t = between(curve, p)
    assert 0.3 < t < 0.5  # halfway to the next lower score (the unknown photo's 0.3)
    assert ((known >= t) == (known >= p.threshold)).all() and not 0.3 >= t
    assert between(curve, curve[0]) == curve[0].threshold
