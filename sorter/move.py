"""The three filesystem steps a journalled transaction is made of: move a file, put a small file, remove one.

Each step is *idempotent*: it looks at what exists (source, destination, temporary copy, hashes) and
does only what is left to do. The same function therefore runs a step the first time and finishes it
after a crash, which is how recovery works (see `txn.py`).

Rules kept by every step:
- nothing is ever overwritten, except a sidecar whose current sha256 is exactly the one we expect to
  replace (our own merge target);
- the source of a move is removed only after the destination is complete. Same filesystem: an atomic
  rename that refuses to overwrite (renameat2 RENAME_NOREPLACE; where the filesystem lacks it, a hard
  link then unlink of the source). Across filesystems: copy to a temporary name, fsync, verify the
  sha256, give it its name the same way, fsync the folder, then remove the source;
- a temporary file never outlives the step that made it.
"""

from __future__ import annotations

import base64
import errno
import hashlib
from pathlib import Path

from .fsops import FileOps, tmp_name

NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EACCES}
NO_RENAME_NOREPLACE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


class StepError(Exception):
    """A step that cannot be done for one file (name taken, file changed or vanished): a one-line reason."""


def _rename_noreplace(ops: FileOps, src: Path, dst: Path) -> bool:
    """Atomic no-overwrite rename; False where unsupported (then link + unlink is used)."""
    try:
        ops.rename_noreplace(src, dst)
    except FileExistsError:
        raise StepError(f"destination {dst} appeared while moving; nothing overwritten") from None
    except OSError as e:
        if e.errno in NO_RENAME_NOREPLACE:
            return False
        raise
    return True


def _publish(ops: FileOps, tmp: Path, dst: Path, keep_on_error: bool = False) -> None:
    """Give complete file `tmp` its final name `dst` without ever overwriting, then fsync the folder.
    On failure the temporary file is removed (unless it is the only copy left: `keep_on_error`)."""
    try:
        if not _rename_noreplace(ops, tmp, dst):
            try:
                ops.link(tmp, dst)
            except FileExistsError:
                raise StepError(f"destination {dst} appeared while moving; nothing overwritten") from None
            except OSError as e:
                if e.errno not in NO_HARD_LINKS:
                    raise
                if ops.lexists(dst):  # no hard links here: check-then-rename (we hold the library lock)
                    raise StepError(f"destination {dst} appeared while moving; nothing overwritten") from None
                ops.rename(tmp, dst)
            else:
                ops.unlink(tmp)
    except BaseException:
        if not keep_on_error:
            ops.remove_quietly(tmp)
        raise
    ops.fsync_dir(dst.parent)


def move(ops: FileOps, src: Path, dst: Path, sha256: str | None) -> None:
    """Move `src` to `dst` (a name that must not exist yet), or finish an interrupted move."""
    tmp = tmp_name(dst)
    has_src, has_dst = ops.lexists(src), ops.lexists(dst)
    if ops.lexists(tmp):
        if not has_src and not has_dst and sha256 and ops.sha256(tmp) == sha256:
            _publish(ops, tmp, dst, keep_on_error=True)  # defensive: a verified copy whose source is gone
            return
        ops.unlink(tmp)  # an unfinished copy: start over from the source
    if has_src and has_dst:
        if ops.samefile(src, dst) or (sha256 and ops.sha256(dst) == sha256):
            ops.fsync_dir(dst.parent, now=True)
            ops.unlink(src)  # the destination is complete: finish by removing the source
            ops.fsync_dir(src.parent)
            return
        raise StepError(f"destination {dst} is taken by a different file; {src} left in place")
    if has_dst:
        return  # already moved
    if not has_src:
        raise StepError(f"{src} vanished before it could be moved")
    ops.makedirs(dst.parent)
    try:
        if _rename_noreplace(ops, src, dst):  # atomic: the file has exactly one name at every moment
            ops.fsync_dir(dst.parent)
            ops.fsync_dir(src.parent)
            return
        ops.link(src, dst)
    except FileExistsError:
        raise StepError(f"destination {dst} appeared while moving; nothing overwritten") from None
    except OSError as e:
        if e.errno == errno.EXDEV:
            _copy_across(ops, src, dst, tmp, sha256)
            return
        if e.errno not in NO_HARD_LINKS:
            raise
        if ops.lexists(dst):
            raise StepError(f"destination {dst} appeared while moving; nothing overwritten") from None
        ops.rename(src, dst)  # same filesystem without hard links: rename under the library lock
        ops.fsync_dir(dst.parent)
        ops.fsync_dir(src.parent)
        return
    ops.fsync_dir(dst.parent, now=True)  # the new name is durable before the old one goes
    ops.unlink(src)
    ops.fsync_dir(src.parent)


def _copy_across(ops: FileOps, src: Path, dst: Path, tmp: Path, sha256: str | None) -> None:
    try:
        copied = ops.copy_new(src, tmp)
        if sha256 and copied != sha256:
            raise StepError(f"{src} changed while it was being copied; left in place")
        if ops.sha256(tmp) != copied:
            raise StepError(f"the copy of {src} does not read back identical; left in place")
        _publish(ops, tmp, dst)
    except BaseException:
        ops.remove_quietly(tmp)
        raise
    ops.fsync_dir(dst.parent, now=True)  # the copy is durable under its name before the source goes
    ops.unlink(src)
    ops.fsync_dir(src.parent)


def put(ops: FileOps, path: Path, data: bytes, expect: str | None) -> None:
    """Make `path` hold `data`. It may replace only a file whose sha256 is `expect`; with `expect`
    None the file must not exist. Written atomically (temporary file, fsync, rename/link)."""
    tmp = tmp_name(path)
    ops.remove_quietly(tmp)
    new = hashlib.sha256(data).hexdigest()
    if ops.lexists(path):
        current = ops.sha256(path)
        if current == new:
            return
        if current != expect:
            raise StepError(f"{path} changed meanwhile; left untouched")
        try:
            ops.write_new(tmp, data)
            ops.rename(tmp, path)  # replaces exactly the content we verified above
        except BaseException:
            ops.remove_quietly(tmp)
            raise
        ops.fsync_dir(path.parent)
        return
    if expect is not None:
        raise StepError(f"{path} vanished; not rewritten")
    ops.makedirs(path.parent)
    try:
        ops.write_new(tmp, data)
    except BaseException:
        ops.remove_quietly(tmp)
        raise
    _publish(ops, tmp, path)


def remove(ops: FileOps, path: Path, expect: str) -> None:
    """Remove `path` if it still holds exactly `expect` (a file we created); absent is fine."""
    if not ops.lexists(path):
        return
    if ops.sha256(path) != expect:
        raise StepError(f"{path} changed since the sorter wrote it; left in place")
    ops.unlink(path)
    ops.fsync_dir(path.parent)


# --- steps as journal records ------------------------------------------------------------------------

def move_step(src: Path, dst: Path, sha256: str | None) -> dict:
    return {"op": "move", "src": str(src), "dst": str(dst), "sha256": sha256}


def put_step(path: Path, data: bytes, expect: str | None) -> dict:
    return {"op": "put", "path": str(path), "data": base64.b64encode(data).decode("ascii"), "expect": expect,
            "sha256": hashlib.sha256(data).hexdigest()}


def remove_step(path: Path, expect: str) -> dict:
    return {"op": "remove", "path": str(path), "expect": expect}


def run_step(ops: FileOps, step: dict) -> None:
    op = step["op"]
    if op == "move":
        move(ops, Path(step["src"]), Path(step["dst"]), step.get("sha256"))
    elif op == "put":
        put(ops, Path(step["path"]), base64.b64decode(step["data"]), step.get("expect"))
    elif op == "remove":
        remove(ops, Path(step["path"]), step["expect"])
    else:
        raise ValueError(f"unknown journal step {op!r}")


def reverse_step(step: dict) -> dict | None:
    """The step that undoes a completed move (used to roll a failed transaction back); None otherwise."""
    if step["op"] == "move":
        return move_step(Path(step["dst"]), Path(step["src"]), step.get("sha256"))
    return None
