"""A smoke test on a handful of real bird photos (skipped where ../shared/data is absent)."""

import shutil

import numpy as np

from sorter.preprocess import preprocess
from tests.trainer.helpers import tiny_config
from trainer.data import load_dataset
from trainer.train import fit


def test_real_photos_decode_and_train(shared_data, tmp_path):
    src = shared_data / "birds10" / "train"
    species = sorted(p.name for p in src.iterdir())[:2]
    for s in species:
        for f in sorted((src / s).glob("*.jpg"))[:5]:
            (tmp_path / "d" / s).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, tmp_path / "d" / s / f.name)
    cfg = tiny_config(resize=72, crop=64, head_lr=0.01, lr=0.01)
    data = load_dataset(tmp_path / "d", cfg.resize, cfg.crop, val_fraction=0.2)
    assert data.classes == species and len(data.val.labels) == 2
    np.testing.assert_array_equal(data.val.pixels[0], preprocess(data.val.paths[0], 72, 64))
    res = fit(cfg, tmp_path / "d", tmp_path / "run", data=data, progress=False)
    assert len(res.history) == 3 and (tmp_path / "run" / "metrics.json").is_file()
