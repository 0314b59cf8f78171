import numpy as np
import pytest

from sorter.card import read_card
from sorter.classify import Classifier
from sorter.errors import ModelError
from tests.conftest import make_colour_photo


def test_tiny_model_classifies_by_colour(tmp_path, tiny_model):
    card = read_card(tiny_model)
    paths = [make_colour_photo(tmp_path / f"{c}{i}.jpg", c, seed=i) for i in range(5) for c in ("red", "green", "blue")]
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    paths.insert(3, tmp_path / "bad.jpg")
    preds = list(Classifier(card, device="cpu", batch_size=4).classify(paths))
    assert [p.path for p in preds] == paths
    bad = preds[3]
    assert bad.label is None and "not an image" in bad.error
    for p in preds[:3] + preds[4:]:
        want = {"red": "Red_Bird", "green": "Green_Bird", "blue": "Blue_Bird"}[p.path.stem.rstrip("0123456789")]
        assert p.label == want and p.error is None
        assert p.confidence > 0.9 and len(p.top3) == 3
        assert np.isclose(sum(c for _, c in p.top3), 1.0, atol=1e-6)


def test_model_not_matching_card_is_refused(tiny_model):
    onnx_path = tiny_model.with_suffix(".onnx")
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match its card"):
        Classifier(read_card(tiny_model), device="cpu")


def test_threshold_follows_the_model_variant_in_use(tiny_model):
    """A separate int8 copy and flip TTA each have their own measured threshold in the card."""
    from sorter.classify import open_set_for
    from sorter.plan import resolve_threshold

    card = read_card(tiny_model)
    card.int8 = {"file": "tiny.int8.onnx", "sha256": "0" * 64, "open_set": {"score": "msp", "threshold": 0.7}}
    card.tta = {"flip": True, "open_set": {"score": "msp", "threshold": 0.6}}
    assert resolve_threshold(card, open_set=open_set_for(card, "fp32", tta=False))[0] == 0.5
    assert resolve_threshold(card, open_set=open_set_for(card, "int8", tta=False))[0] == 0.7
    assert resolve_threshold(card, open_set=open_set_for(card, "fp32", tta=True))[0] == 0.6
    assert resolve_threshold(card, 0.9, open_set=open_set_for(card, "int8", tta=True))[0] == 0.9
    card.onnx["precision"] = "int8"  # --int8-only export: the main section describes the int8 model
    assert resolve_threshold(card, open_set=open_set_for(card, "int8", tta=False))[0] == 0.5
