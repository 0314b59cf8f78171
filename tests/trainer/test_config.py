"""[trainer] of config.toml: every key present matches TrainerConfig's defaults; bad values are named."""

import pytest

from sorter.errors import ConfigError
from tests.conftest import REPO
from trainer.config import TrainerConfig, load_config


def test_project_config_equals_the_dataclass_defaults():
    assert load_config(REPO / "config.toml") == TrainerConfig()


def test_every_field_is_documented_in_config_toml():
    text = (REPO / "config.toml").read_text()
    section = text[text.index("[trainer]"):text.index("[sorter]")]
    import dataclasses

    for f in dataclasses.fields(TrainerConfig):
        assert f"{f.name} =" in section or f.name == "lr_find", f.name
    assert "[trainer.lr_find]" in section


@pytest.mark.parametrize("text, key", [
    ("[trainer]\nprecision = \"fp16\"\n", "trainer.precision"),
    ("[trainer]\ncrop = 300\n", "trainer.crop"),
    ("[trainer]\ntrain_crop_ratio = 1.5\n", "trainer.train_crop_ratio"),
    ("[trainer]\nepochs = \"ten\"\n", "trainer.epochs"),
    ("[trainer.lr_find]\nrule = \"magic\"\n", "trainer.lr_find.rule"),
    ("[trainer.lr_find]\nstart = 1\n", "trainer.lr_find.start"),
])
def test_bad_values_name_their_key(tmp_path, text, key):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(p)


def test_overrides_apply_on_top(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[trainer]\nepochs = 3\n")
    cfg = load_config(p, {"epochs": 5, "lr": None, "lr_find.rule": "minimum"})
    assert cfg.epochs == 5 and cfg.lr is None and cfg.lr_find.rule == "minimum"


def test_training_crops_are_the_ratio_of_the_eval_crop_in_steps_of_8():
    from trainer.config import train_crop

    assert train_crop(TrainerConfig()) == 112  # the default: 0.78 x 144
    assert train_crop(TrainerConfig(crop=144, train_crop_ratio=1.0)) == 144
    assert train_crop(TrainerConfig(resize=40, crop=32, train_crop_ratio=0.78)) == 24
    assert train_crop(TrainerConfig(resize=40, crop=8, train_crop_ratio=0.25)) == 8
