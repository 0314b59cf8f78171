"""Confidence and open-set scores computed from a model's logits (numpy only).

`calibrated_probs` gives the confidence the report shows (softmax of logits / temperature). The review
decision uses the card's `open_set.score` through `SCORES`: higher always means "more likely a known
species, filed with confidence"; a photo is sent to review when its score is below the threshold.
"""

from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def calibrated_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / float(temperature))


def msp(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Maximum calibrated softmax probability."""
    return calibrated_probs(logits, temperature).max(axis=-1)


def max_logit(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.asarray(logits, dtype=np.float64).max(axis=-1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy: T * logsumexp(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    m = z.max(axis=-1)
    return float(temperature) * (m + np.log(np.exp(z - m[..., None]).sum(axis=-1)))


SCORES = {"msp": msp, "max_logit": max_logit, "energy": energy}


def score(name: str, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    try:
        fn = SCORES[name]
    except KeyError:
        raise ValueError(f"unknown open-set score {name!r} (known: {', '.join(SCORES)})") from None
    return fn(logits, temperature)
