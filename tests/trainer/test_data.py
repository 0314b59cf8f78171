"""Folder datasets: layouts, clear errors, unreadable files skipped, decode-once cache, eval transform."""

import logging

import numpy as np
import pytest

from sorter.preprocess import preprocess
from tests.conftest import build_tree, make_photo
from tests.trainer.helpers import tiny_tree
from trainer.augment import augment, normalize, to_tensor
from trainer.data import DataError, data_fingerprint, decode_all, discover, load_dataset, stratified_split
from trainer.model import MEAN, STD

import torch


def test_flat_folder_is_split_stratified_and_seeded(tmp_path):
    tiny_tree(tmp_path, n=10)
    a = discover(tmp_path, val_fraction=0.2, seed=1)
    b = discover(tmp_path, val_fraction=0.2, seed=1)
    assert a.classes == ["alpha", "beta", "gamma"] and a.split_from_train
    assert a.val.paths == b.val.paths
    assert sorted(a.val.labels) == [0, 0, 1, 1, 2, 2]  # 2 of each class's 10
    assert not set(a.train.paths) & set(a.val.paths)
    assert discover(tmp_path, 0.2, seed=2).val.paths != a.val.paths


def test_stratified_split_keeps_a_training_photo_per_class():
    t, v = stratified_split([[1] * 2, [1] * 1, [1] * 5], 0.5, 0)
    assert len(v) == 1 + 0 + 2 and len(t) == 1 + 1 + 3


def test_train_val_layout(tmp_path):
    tiny_tree(tmp_path, split=True)
    ds = discover(tmp_path)
    assert not ds.split_from_train
    assert len(ds.val) == 6 and len(ds.train) == 18
    assert all("val" in p.parts for p in ds.val.paths)


@pytest.mark.parametrize("tree, message", [
    (None, "dataset folder not found"),
    ({"only": {"a.jpg": None}}, "only one class"),
    ({"a": {"1.jpg": None}, "b": {}}, "class folder 'b'.*holds no photos"),
    ({"train": {"a": {"1.jpg": None}, "b": {"1.jpg": None}}, "val": {"a": {"1.jpg": None}, "c": {"1.jpg": None}}},
     "class 'c' is in .*val but not in"),
    ({"val": {"a": {"1.jpg": None}}}, "val/ but no train/"),
    ({"notes.txt": "x"}, "no class folders"),
])
def test_bad_datasets_give_one_clear_line(tmp_path, tree, message):
    root = tmp_path / "data"
    if tree is not None:
        root.mkdir()
        build_tree(root, tree)
    with pytest.raises(DataError, match=message) as e:
        discover(root)
    assert "\n" not in str(e.value)


def test_unreadable_files_are_reported_once_and_skipped(tmp_path, caplog):
    tiny_tree(tmp_path, n=4)
    (tmp_path / "alpha" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "beta" / "notes.txt").write_text("field notes")
    with caplog.at_level(logging.WARNING):
        data = load_dataset(tmp_path, 40, 32, val_fraction=0.25)
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2 and any("broken.jpg" in m for m in skipped) and any("notes.txt" in m for m in skipped)
    assert len(data.train.labels) + len(data.val.labels) == 12
    assert data.train.pixels.shape[1:] == (40, 40, 3) and data.val.pixels.shape[1:] == (32, 32, 3)


def test_class_with_only_unreadable_files_is_refused(tmp_path):
    tiny_tree(tmp_path, classes=("a", "b"), n=3)
    build_tree(tmp_path, {"c": {"x.jpg": b"garbage", "y.jpg": b"more garbage"}})
    with pytest.raises(DataError, match="class 'c' has no readable photos"):
        load_dataset(tmp_path, 40, 32)


def test_val_pixels_are_exactly_the_shared_preprocessing(tmp_path):
    tiny_tree(tmp_path, split=True)
    data = load_dataset(tmp_path, 40, 32)
    for px, path in zip(data.val.pixels, data.val.paths):
        np.testing.assert_array_equal(px, preprocess(path, 40, 32))
    x = normalize(to_tensor(data.val.pixels[:1]))
    manual = (data.val.pixels[0].astype(np.float32) / 255 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), manual, atol=1e-5)


def test_disk_cache_is_reused_and_keyed_by_file_state(tmp_path, monkeypatch):
    paths = [make_photo(tmp_path / "p" / f"{i}.jpg", seed=i) for i in range(3)]
    first = decode_all(paths, 40, 32, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    import trainer.data as data_mod

    monkeypatch.setattr(data_mod, "_decode_one", lambda a: pytest.fail("decoded again"))
    again = decode_all(paths, 40, 32, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(first.pixels, again.pixels)
    monkeypatch.undo()
    make_photo(paths[0], size=(50, 40), seed=42)  # changed file: new key, decoded again
    changed = decode_all(paths, 40, 32, cache_dir=tmp_path / "cache")
    assert not np.array_equal(changed.pixels[0], first.pixels[0])


def test_fingerprint_follows_files(tmp_path):
    tiny_tree(tmp_path, n=4)
    f1 = data_fingerprint(discover(tmp_path))
    assert f1 == data_fingerprint(discover(tmp_path))
    make_photo(tmp_path / "alpha" / "new.jpg", seed=5)
    assert data_fingerprint(discover(tmp_path)) != f1


def test_augment_shapes_range_and_determinism():
    x = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    a = augment(x, 32, torch.Generator().manual_seed(0), jitter=0.2)
    b = augment(x, 32, torch.Generator().manual_seed(0), jitter=0.2)
    assert a.shape == (4, 3, 32, 32) and a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, 32, torch.Generator().manual_seed(1), jitter=0.2))
    # a full-area square box without flip or jitter is the identity resampling
    same = augment(x, 40, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    torch.testing.assert_close(same, normalize(x), atol=1e-4, rtol=0)
