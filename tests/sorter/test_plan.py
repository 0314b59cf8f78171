from pathlib import Path

import pytest

from sorter.card import ModelCard
from sorter.classify import Prediction
from sorter.errors import UserError
from sorter.plan import plan_batch, resolve_threshold
from sorter.scan import Group


def card(**open_set) -> ModelCard:
    return ModelCard("m", ["A", "B"], {"resize": 40, "crop": 32}, {"file": "m.onnx", "sha256": "0"},
                     open_set={"score": "msp", **open_set})


CURVE = [{"threshold": 0.9, "precision": 0.99, "coverage": 0.5}, {"threshold": 0.5, "precision": 0.95},
         {"threshold": 0.7, "precision": 0.98}, {"threshold": 0.3, "precision": 0.90}]


def test_threshold_resolution():
    c = card(threshold=0.6, curve=CURVE)
    assert resolve_threshold(c, threshold=0.2)[0] == 0.2
    assert resolve_threshold(c)[0] == 0.6
    assert resolve_threshold(c, target_precision=0.98)[0] == 0.7   # lowest threshold reaching it
    assert resolve_threshold(c, target_precision=0.95)[0] == 0.5
    with pytest.raises(UserError, match="at most 0.990"):
        resolve_threshold(c, target_precision=0.999)
    with pytest.raises(UserError, match="no open_set.curve"):
        resolve_threshold(card(threshold=0.5), target_precision=0.9)
    with pytest.raises(UserError, match="need threshold and precision"):
        resolve_threshold(card(curve=[{"t": 1}]), target_precision=0.9)


def group(name: str, *extra: str) -> Group:
    files = [Path(f"/in/{name}.jpg")] + [Path(f"/in/{name}{e}") for e in extra]
    return Group(Path("/in"), name, files)


def pred(g: Group, label="A", score=0.9, error=None) -> Prediction:
    if error:
        return Prediction(g.primary, error=error)
    return Prediction(g.primary, label, score, score, [(label, score)])


def test_decisions():
    groups = [group("a"), group("b"), group("c"), group("d", ".cr2", ".xmp"), group("e"), group("f", ".cr2")]
    hashes = {f: f"h-{f.name}" for g in groups for f in g.files}
    hashes[groups[4].primary] = hashes[groups[0].primary]       # e.jpg repeats a.jpg in the same batch
    hashes[groups[5].primary] = "in-library"                   # f.jpg is in the library, f.cr2 is not
    library = {"h-d.jpg": "/lib/A/d.jpg", "h-d.cr2": "/lib/A/d.cr2", "in-library": "/lib/A/f.jpg"}
    preds = [pred(groups[0]), pred(groups[1], score=0.2), pred(groups[2], error="not an image"),
             pred(groups[3]), pred(groups[4]), pred(groups[5], "B")]
    d = plan_batch(groups, preds, hashes, 0.5, library.get)
    assert [(x.action, x.folder) for x in d] == [
        ("moved", "A"), ("review", "_review"), ("rejected", "_rejected"), ("duplicate", None),
        ("duplicate", None), ("moved", "B")]
    assert "below threshold" in d[1].reason and d[2].reason == "not an image"
    assert d[3].duplicate_of[groups[3].primary] == "/lib/A/d.jpg"   # sidecar need not match
    assert "filed in this run" in d[4].reason
