"""trainer export: graph, parity on real photos, card, errors, int8 (tiny models, real photos)."""

import json
import os

import numpy as np
import onnx
import pytest
import torch

from sorter.card import read_card
from sorter.classify import Classifier
from sorter.errors import ModelError, UserError
from sorter.preprocess import preprocess
from tests.conftest import make_photo
from trainer.export import ExportOptions, export_run
from trainer.model import build_model
from trainer.onnx_eval import check_card_matches

SPECIES = ["Horned_Puffin", "Ivory_Gull", "Painted_Bunting"]
RESIZE, CROP = 72, 64


def link_photos(shared_data, root, per_split=(4, 3)):
    """A small dataset of symlinks to real photos (nothing is copied)."""
    for split, n in zip(("train", "val"), per_split):
        for c in SPECIES:
            (root / split / c).mkdir(parents=True)
            for p in sorted((shared_data / "birds10" / split / c).glob("*.jpg"))[:n]:
                os.symlink(p, root / split / c / p.name)
    return root


def save_checkpoint(path, classes, seed=0, **extra):
    """A checkpoint in the trainer's format, from an untrained (weights none) ResNet-18."""
    torch.manual_seed(seed)
    model = build_model(len(classes), "none")
    # untrained features are large: a small head keeps logits of a few units, so probabilities are not
    # saturated and the parity check compares something
    torch.nn.init.normal_(model.fc.weight, std=0.03)
    ckpt = {"model": model.state_dict(), "arch": "resnet18", "classes": list(classes),
            "input": {"resize": RESIZE, "crop": CROP}, "config": {"seed": 0, "val_fraction": 0.2},
            "weights": "none", "data_fingerprint": "test", "metrics": {"val_top1": 0.0}}
    ckpt.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


@pytest.fixture
def dataset(shared_data, tmp_path):
    return link_photos(shared_data, tmp_path / "data")


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", SPECIES)
    return run


def opts(tmp_path, dataset, **kw):
    base = dict(name="m", out=tmp_path / "exports", data=dataset)
    base.update(kw)
    return ExportOptions(**base)


def test_export_writes_a_checked_model_and_card(tmp_path, dataset, run, shared_data):
    unknown = tmp_path / "unknown" / "Mallard"
    unknown.mkdir(parents=True)
    for p in sorted((shared_data / "unknown" / "Mallard").glob("*.jpg"))[:4]:
        os.symlink(p, unknown / p.name)
    result = export_run(run, opts(tmp_path, dataset, unknown=unknown.parent))
    out = tmp_path / "exports"
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.onnx", "m.review.png"]  # no temp files left
    onnx.checker.check_model(onnx.load(out / "m.onnx"))
    card = read_card(out / "m.json")
    check_card_matches(card)
    assert card.labels == SPECIES and (card.resize, card.crop) == (RESIZE, CROP)
    assert card.onnx["input"] == "image" and card.onnx["output"] == "logits"
    assert card.calibration["temperature"] > 0 and "ece_after" in card.calibration
    o = card.open_set
    assert o["score"] == "msp" and o["unknown_photos"] == 4 and o["known_photos"] == 9
    assert set(o["compared"]) == {"msp", "max_logit", "energy"} and o["compared"]["msp"]["threshold"] == o["threshold"]
    assert {"threshold", "review_known", "review_unknown", "precision"} <= set(o["curve"][0])
    assert card.provenance["weights"] == "none" and card.provenance["commit"] and card.provenance["date"]
    assert {"flip", "top1", "top1_flip", "top1_gain", "time_factor"} <= set(card.tta)
    assert any(line.startswith("parity:") for line in result.lines)

    # the sorter classifies real photos with it, batch axis dynamic (5 photos, batch 2)
    photos = sorted((shared_data / "birds10" / "val" / "Ivory_Gull").glob("*.jpg"))[:5]
    preds = list(Classifier(card, device="cpu", batch_size=2).classify(photos))
    assert len(preds) == 5 and all(p.label in SPECIES and p.error is None for p in preds)


def test_parity_on_real_photos(tmp_path, dataset, run, shared_data):
    """sorter.preprocess + onnxruntime against the trainer's eval transform + torch: same top-1,
    probabilities within 1e-3, on real photos the export did not see."""
    from trainer.checkpoint import load_checkpoint, model_from_checkpoint
    from trainer.export import torch_eval_logits  # trainer.evaluate.predict_logits, fp32 CPU

    export_run(run, opts(tmp_path, dataset))
    card = read_card(tmp_path / "exports" / "m.json")
    photos = [sorted((shared_data / "birds10" / "val" / c).glob("*.jpg"))[-1] for c in ("Ivory_Gull", "Cerulean_Warbler",
                                                                                       "Le_Conte_Sparrow")]
    clf = Classifier(card, device="cpu")
    px = np.stack([preprocess(p, RESIZE, CROP) for p in photos])
    onnx_probs = np.array([p.top3[0][1] for p in clf.classify(photos)])
    torch_logits = torch_eval_logits(model_from_checkpoint(load_checkpoint(run)), px)
    t = torch.softmax(torch.from_numpy(torch_logits) / card.temperature, 1).numpy()
    o = torch.softmax(torch.from_numpy(clf.logits(px)).double() / card.temperature, 1).numpy()
    assert (t.argmax(1) == o.argmax(1)).all()
    assert np.abs(t - o).max() < 1e-3
    assert np.allclose(onnx_probs, t.max(1), atol=1e-3)


def test_parity_failure_fails_the_export(tmp_path, dataset, run, monkeypatch):
    import trainer.export as export

    real = export.torch_eval_logits
    monkeypatch.setattr(export, "torch_eval_logits", lambda m, px: np.roll(real(m, px), 1, axis=1))
    with pytest.raises(UserError, match="parity check failed"):
        export_run(run, opts(tmp_path, dataset))
    assert not (tmp_path / "exports" / "m.json").exists() and not (tmp_path / "exports" / "m.onnx").exists()


def test_overwrite_needs_force(tmp_path, dataset, run):
    export_run(run, opts(tmp_path, dataset))
    before = (tmp_path / "exports" / "m.onnx").read_bytes()
    with pytest.raises(UserError, match=r"m\.onnx already exists.*--force"):
        export_run(run, opts(tmp_path, dataset))
    assert (tmp_path / "exports" / "m.onnx").read_bytes() == before
    save_checkpoint(run / "best.pt", SPECIES, seed=1)
    export_run(run, opts(tmp_path, dataset, force=True))
    assert (tmp_path / "exports" / "m.onnx").read_bytes() != before
    check_card_matches(read_card(tmp_path / "exports" / "m.json"))


def test_run_without_checkpoint_is_refused(tmp_path, dataset):
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(UserError, match="checkpoint not found"):
        export_run(tmp_path / "empty_run", opts(tmp_path, dataset))
    assert not (tmp_path / "exports").exists() or not any((tmp_path / "exports").iterdir())


def test_bad_name_and_class_mismatch_are_refused(tmp_path, dataset, run):
    with pytest.raises(UserError, match="model name"):
        export_run(run, opts(tmp_path, dataset, name="../evil"))
    other = tmp_path / "other"
    save_checkpoint(other / "best.pt", ["A_bird", "B_bird", "C_bird"])
    with pytest.raises(UserError, match="differ from the checkpoint"):
        export_run(other, opts(tmp_path, dataset))


def test_card_that_does_not_match_its_model_is_refused(tmp_path, dataset, run):
    export_run(run, opts(tmp_path, dataset))
    path = tmp_path / "exports" / "m.json"
    data = json.loads(path.read_text())
    data["labels"] = data["labels"][:2]  # the graph still has 3 outputs
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="3 outputs but 2 labels"):
        check_card_matches(read_card(path))
    data["labels"] = SPECIES
    data["onnx"]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="does not match its card"):
        check_card_matches(read_card(path))


def test_int8_export_runs_on_a_small_model(tmp_path, dataset, run):
    result = export_run(run, opts(tmp_path, dataset, int8=True, calib_photos=6))
    card = read_card(tmp_path / "exports" / "m.json")
    i8 = card.int8
    assert i8["file"] == "m.int8.onnx" and i8["format"] in ("qdq", "qoperator") and i8["speedup"] > 0
    assert i8["calibration_photos"] == 6 and 0 <= i8["agreement"] <= 1
    assert 0 < i8["open_set"]["threshold"] <= 1 and "at_threshold" in i8["open_set"]
    from sorter.card import verify_model
    verify_model(card, "int8")
    model = onnx.load(tmp_path / "exports" / "m.int8.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert ops & {"QuantizeLinear", "QLinearConv", "DequantizeLinear"}
    assert any(line.startswith("int8") for line in result.lines)


def test_unreadable_val_photo_is_skipped_not_fatal(tmp_path, dataset, run):
    (dataset / "val" / "Ivory_Gull" / "broken.jpg").write_bytes(b"not a jpeg")
    make_photo(dataset / "val" / "Ivory_Gull" / "generated.png", size=(90, 80))
    export_run(run, opts(tmp_path, dataset))
    assert read_card(tmp_path / "exports" / "m.json").metrics["photos"] == 10


def test_evaluate_exported_runs_the_sorter_code(tmp_path, dataset, run, shared_data):
    from trainer.onnx_eval import evaluate_exported

    unknown = tmp_path / "unknown" / "Mallard"
    unknown.mkdir(parents=True)
    for p in sorted((shared_data / "unknown" / "Mallard").glob("*.jpg"))[:3]:
        os.symlink(p, unknown / p.name)
    export_run(run, opts(tmp_path, dataset, unknown=unknown.parent))
    card = read_card(tmp_path / "exports" / "m.json")
    report = evaluate_exported(tmp_path / "exports" / "m.onnx", dataset, unknown=unknown.parent)
    assert report["photos"] == 9 and report["top1"] == pytest.approx(card.metrics["top1"], abs=1e-4)
    assert report["ece"] == pytest.approx(card.metrics["ece"], abs=1e-3)
    assert report["open_set"]["review_known"] == pytest.approx(card.open_set["at_threshold"]["review_known"], abs=1e-6)
    assert report["open_set"]["review_unknown"] == pytest.approx(card.open_set["at_threshold"]["review_unknown"], abs=1e-6)
    assert sum(map(sum, report["confusion"])) == 9
    with pytest.raises(UserError, match="not one of the model's labels"):
        evaluate_exported(tmp_path / "exports" / "m.onnx", shared_data / "unknown")


def test_int8_only_ships_the_quantized_graph_described_by_the_card(tmp_path, dataset, run, shared_data):
    export_run(run, opts(tmp_path, dataset, int8_only=True, calib_photos=6))
    out = tmp_path / "exports"
    assert sorted(p.name for p in out.iterdir()) == ["m.json", "m.onnx", "m.review.png"]
    card = read_card(out / "m.json")
    assert card.onnx["precision"] == "int8" and card.int8["file"] == "m.onnx"
    check_card_matches(card)
    assert {n.op_type for n in onnx.load(out / "m.onnx").graph.node} & {"QuantizeLinear", "QLinearConv"}
    photos = sorted((shared_data / "birds10" / "val" / "Horned_Puffin").glob("*.jpg"))[:3]
    assert all(p.label in SPECIES for p in Classifier(card, device="cpu").classify(photos))
