"""Temperature scaling: one scalar T that makes softmax(logits / T) an honest confidence.

Fitted on the validation split by minimising the negative log-likelihood over log T (a bracketed
1-D search: the NLL is smooth and unimodal in log T for all practical purposes). Temperature scaling
never changes the top-1 prediction, only how confident it claims to be; the expected calibration
error (ECE) is reported before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sorter.scores import calibrated_probs

from .evaluate import expected_calibration_error


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0,
                    tol: float = 1e-4) -> float:
    """The temperature in [lo, hi] that minimises the NLL (golden-section search on log T)."""
    labels = np.asarray(labels)
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2.0))


@dataclass
class Calibration:
    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def card(self) -> dict:
        return {"temperature": round(self.temperature, 5), "method": "temperature scaling (val NLL)",
                "nll_before": round(self.nll_before, 5), "nll_after": round(self.nll_after, 5),
                "ece_before": round(self.ece_before, 5), "ece_after": round(self.ece_after, 5)}


def calibrate(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    t = fit_temperature(logits, labels)
    return Calibration(
        temperature=t,
        nll_before=nll(logits, labels, 1.0),
        nll_after=nll(logits, labels, t),
        ece_before=expected_calibration_error(calibrated_probs(logits, 1.0), labels),
        ece_after=expected_calibration_error(calibrated_probs(logits, t), labels),
    )
