import numpy as np

from sorter.scores import calibrated_probs
from trainer.calibrate import calibrate, fit_temperature, nll
from trainer.evaluate import ece_of, expected_calibration_error


def overconfident(n=4000, k=5, true_t=2.5, seed=0):
    """Logits whose labels are drawn from softmax(logits / true_t): the right temperature is true_t."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, k))
    p = calibrated_probs(logits, true_t)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return logits, labels


def test_fit_recovers_the_temperature():
    logits, labels = overconfident()
    t = fit_temperature(logits, labels)
    assert abs(t - 2.5) < 0.25
    assert nll(logits, labels, t) <= min(nll(logits, labels, s) for s in (1.0, 2.0, 3.0))


def test_calibration_lowers_ece():
    logits, labels = overconfident()
    cal = calibrate(logits, labels)
    assert cal.ece_after < cal.ece_before / 2 and cal.nll_after < cal.nll_before


def test_ece_of_a_perfectly_calibrated_coin_is_small():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 20000)
    labels = (rng.random(20000) > conf).astype(int)  # class 0 is right with probability conf
    probs = np.stack([conf, 1 - conf], 1)
    assert expected_calibration_error(probs, labels) < 0.02
    assert ece_of(conf, labels == 0) == expected_calibration_error(probs, labels)
    assert expected_calibration_error(np.stack([np.ones(100), np.zeros(100)], 1), np.ones(100, int)) == 1.0
