"""config.toml is loaded and validated in one place: unknown keys and wrong types give one clear line."""

import subprocess
import sys

import pytest

from sorter.config import SorterConfig, load_section
from sorter.errors import ConfigError
from tests.conftest import REPO


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_project_config_loads_and_matches_defaults():
    cfg = load_section(SorterConfig, "sorter", REPO / "config.toml")
    assert cfg == SorterConfig()


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, "[sorter]\nbatch_sise = 8\n")
    with pytest.raises(ConfigError, match="sorter.batch_sise"):
        load_section(SorterConfig, "sorter", p)


def test_unknown_section_is_named(tmp_path):
    p = write(tmp_path, "[sortr]\nbatch_size = 8\n")
    with pytest.raises(ConfigError, match=r"\[sortr\]"):
        load_section(SorterConfig, "sorter", p)


def test_wrong_type_is_named(tmp_path):
    p = write(tmp_path, '[sorter]\nbatch_size = "big"\n')
    with pytest.raises(ConfigError, match="sorter.batch_size.*int"):
        load_section(SorterConfig, "sorter", p)


def test_nested_table_and_overrides(tmp_path):
    p = write(tmp_path, '[sorter]\nbatch_size = 8\n[sorter.schedule]\ncron = "0 2 * * *"\n')
    cfg = load_section(SorterConfig, "sorter", p, {"batch_size": 4, "threshold": None, "schedule.watch_interval": 2})
    assert cfg.batch_size == 4 and cfg.threshold is None
    assert cfg.schedule.cron == "0 2 * * *" and cfg.schedule.watch_interval == 2.0


def test_bad_value_is_refused(tmp_path):
    p = write(tmp_path, '[sorter]\ndevice = "tpu"\n')
    with pytest.raises(ConfigError, match="sorter.device"):
        load_section(SorterConfig, "sorter", p)


def test_invalid_toml(tmp_path):
    p = write(tmp_path, "[sorter\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_section(SorterConfig, "sorter", p)


def test_sorter_package_never_imports_torch():
    """DESIGN: the sorter must run where only onnxruntime is installed."""
    code = (
        "import sys, importlib, pkgutil, sorter\n"
        "for m in pkgutil.walk_packages(sorter.__path__, 'sorter.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('torch', 'torchvision', 'trainer') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
