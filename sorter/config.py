"""Configuration: `config.toml` is loaded and validated here, and only here.

Each tool declares its settings as a dataclass (`SorterConfig` below, `trainer.config.TrainerConfig`);
`load_section` reads one `[section]` of the TOML file, rejects unknown keys and wrong types with a one-line
error naming the key, and applies command-line overrides (flags the user actually gave) on top.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")

# the repository's config.toml, used when the user names none and none is in the working directory
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_NAME = "config.toml"


def find_config(path: str | os.PathLike | None) -> Path | None:
    """The config file to use: the one named, else ./config.toml, else the project's own, else None."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    for candidate in (Path.cwd() / DEFAULT_CONFIG_NAME, PACKAGE_ROOT / DEFAULT_CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a TOML value fits a dataclass field's type (int accepted for float; None for Optional)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        inner = args[0] if args else Any
        return all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def build(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass `cls` from a dict, validating keys and types; nested dataclasses recurse."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key '{where}.{unknown[0]}' in config (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}.{key}' must be a table")
            kwargs[key] = build(hint, value, f"{where}.{key}")
            continue
        if not _type_ok(value, hint):
            raise ConfigError(
                f"config key '{where}.{key}' must be {_describe(hint)}, got {type(value).__name__} {value!r}"
            )
        if typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = float(value) if hint is float else value
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def load_section(
    cls: type[T],
    section: str,
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Read `[section]` of the config file into `cls`, then apply overrides (None values are ignored).

    Overrides use dotted keys for nested tables, e.g. {"schedule.cron": "0 2 * * *"}.
    """
    data = read_toml(find_config(path))
    unknown_sections = sorted(set(data) - {"trainer", "sorter"})
    if unknown_sections:
        raise ConfigError(f"unknown section '[{unknown_sections[0]}]' in config (known: [trainer], [sorter])")
    values = dict(data.get(section, {}))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if rest:
            values.setdefault(head, {})
            values[head] = {**values[head], rest: value}
        else:
            values[key] = value
    return build(cls, values, section)


# ----------------------------------------------------------------------------------------------------
# The sorter's settings. Defaults here equal those in config.toml; the file documents each key.


@dataclass
class ScheduleConfig:
    cron: str | None = None          # crontab line for nightly runs, e.g. "0 2 * * *"; None = no schedule
    watch_interval: float = 30.0     # seconds between inbox polls with --watch
    timezone: str | None = None      # IANA name for `cron`; None = the machine's local zone


@dataclass
class SorterConfig:
    library: str | None = None       # where sorted photos go; --library overrides
    model: str = "default"           # a model name in exports/ or a path to NAME.onnx
    threshold: float | None = None   # review threshold on the card's score; None = the card's recommendation
    target_precision: float | None = None  # pick the threshold from the card's curve instead (e.g. 0.98)
    batch_size: int = 32             # photos per onnxruntime run
    device: str = "auto"             # auto | cpu | cuda
    workers: int = 0                 # decoding threads; 0 = one per CPU core
    settle_seconds: float = 5.0      # a file is taken only after size and mtime held still this long
    tta: bool = False                # flip test-time augmentation (doubles inference cost)
    int8: bool | None = None         # use NAME.int8.onnx when present; None = when the card says it is as accurate
    write_sidecars: bool = True      # write species keywords into XMP sidecars
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"config key 'sorter.device' must be auto, cpu or cuda, got {self.device!r}")
        if self.batch_size < 1:
            raise ConfigError("config key 'sorter.batch_size' must be at least 1")
        if self.workers < 0:
            raise ConfigError("config key 'sorter.workers' must be 0 (one per core) or more")
        if self.threshold is not None and not 0.0 <= self.threshold:
            raise ConfigError("config key 'sorter.threshold' must not be negative")
        if self.target_precision is not None and not 0.0 < self.target_precision <= 1.0:
            raise ConfigError("config key 'sorter.target_precision' must be in (0, 1]")
        if self.settle_seconds < 0:
            raise ConfigError("config key 'sorter.settle_seconds' must not be negative")
        if self.schedule.watch_interval <= 0:
            raise ConfigError("config key 'sorter.schedule.watch_interval' must be positive")
