"""The library's layout, and the checks that inbox and library make sense together.

    library/<Species>/      filed photos (with their siblings and sidecars)
    library/_review/        below the threshold or unknown
    library/_rejected/      unreadable, with the reason in the report
    library/reports/        one CSV per run
    library/.sorter/        index.sqlite (WAL), journal.jsonl, lock, backups/ (original sidecars)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

STATE = ".sorter"


@dataclass(frozen=True)
class Library:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def index(self) -> Path:
        return self.state / "index.sqlite"

    @property
    def journal(self) -> Path:
        return self.state / "journal.jsonl"

    @property
    def lock(self) -> Path:
        return self.state / "lock"

    @property
    def backups(self) -> Path:
        return self.state / "backups"

    @property
    def reports(self) -> Path:
        return self.root / "reports"


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def enclosing_library(path: Path) -> Path | None:
    """A library (a folder holding .sorter/) strictly above `path`, if any."""
    for parent in path.parents:
        if (parent / STATE).is_dir():
            return parent
    return None


def check_paths(inbox: Path, library: Path) -> tuple[Path, Library]:
    """Absolute, resolved inbox and library, or a UserError saying why they cannot be used together."""
    inbox = Path(os.path.abspath(os.path.expanduser(inbox)))
    library = Path(os.path.abspath(os.path.expanduser(library)))
    if not inbox.exists():
        raise UserError(f"inbox not found: {inbox}")
    if not inbox.is_dir():
        raise UserError(f"inbox is not a folder: {inbox}")
    inbox = inbox.resolve()
    library = library.resolve()
    if library.exists() and not library.is_dir():
        raise UserError(f"library is not a folder: {library}")
    if _inside(inbox, library):
        raise UserError(f"the inbox {inbox} is inside the library {library}: choose an inbox outside it")
    outer = enclosing_library(library)
    if outer is not None:
        raise UserError(f"the library {library} is inside another library ({outer}): use {outer} itself")
    return inbox, Library(library)
