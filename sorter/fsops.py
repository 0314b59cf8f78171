"""Every operating-system call that changes photos or library state, behind one small object.

The sorter's moves, copies, sidecar writes and journal appends all go through a `FileOps` instance, so a
test can subclass it and make any call fail the way a real disk would (ENOSPC, EROFS, EXDEV, EACCES...).
Nothing else in the sorter writes to the inbox or the library directly.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

from .card import sha256_file

try:  # Linux: renameat2(RENAME_NOREPLACE) renames atomically and fails with EEXIST instead of overwriting
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):
    _renameat2 = None
AT_FDCWD, RENAME_NOREPLACE = -100, 1

CHUNK = 1 << 20

# errors that concern the library or the whole disk, not one photo: the run must stop (nothing is lost)
STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO, errno.EFBIG}


class FileOps:
    """The real filesystem. Subclass and override a method to inject a fault."""

    # --- reading -----------------------------------------------------------------------------------
    def lexists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def stat(self, path: Path) -> os.stat_result:
        return os.stat(path, follow_symlinks=False)

    def read_bytes(self, path: Path) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def sha256(self, path: Path) -> str:
        return sha256_file(path, CHUNK)

    def samefile(self, a: Path, b: Path) -> bool:
        try:
            sa, sb = self.stat(a), self.stat(b)
        except FileNotFoundError:
            return False
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)

    # --- changing ----------------------------------------------------------------------------------
    def makedirs(self, path: Path) -> None:
        os.makedirs(path, exist_ok=True)

    def link(self, src: Path, dst: Path) -> None:
        """Hard link: fails with EEXIST when `dst` exists, so it never overwrites."""
        os.link(src, dst, follow_symlinks=False)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def rename_noreplace(self, src: Path, dst: Path) -> None:
        """Atomic rename that never overwrites (EEXIST). ENOSYS/EINVAL where the system or the
        filesystem cannot do it: the caller falls back to link + unlink."""
        if _renameat2 is None:
            raise OSError(errno.ENOSYS, "renameat2 is not available", str(src))
        if _renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(src), None, str(dst))

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def open_new(self, path: Path) -> int:
        """Create `path` for writing; fails when it exists (O_EXCL)."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)

    def open_append(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)

    def write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def truncate(self, path: Path, size: int) -> None:
        os.truncate(path, size)

    def set_times(self, path: Path, atime_ns: int, mtime_ns: int) -> None:
        os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)

    def fsync_dir(self, path: Path, now: bool = False) -> None:
        """Make a folder's entries durable. Inside `deferred_dir_syncs` (and unless `now`), only noted:
        each folder is then synced once when the batch ends."""
        deferred = getattr(self, "_deferred", None)
        if deferred is not None and not now:
            deferred.add(Path(path))
            return
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return  # some platforms cannot open directories; rename durability is then best effort
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    @contextmanager
    def deferred_dir_syncs(self):
        """Group commit: folder fsyncs requested inside are done once each, on the way out."""
        self._deferred: set[Path] | None = set()
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            folders, self._deferred = self._deferred, None
            for folder in sorted(folders or ()):
                try:
                    self.fsync_dir(folder)
                except OSError:
                    if not failed:
                        raise

    # --- composed helpers (built only on the methods above, so faults reach them too) ---------------
    def copy_new(self, src: Path, dst: Path) -> str:
        """Copy `src` to a new file `dst` (O_EXCL), fsync it, keep its times; return the sha256 written."""
        h = hashlib.sha256()
        st = self.stat(src)
        fd = self.open_new(dst)
        try:
            with open(src, "rb") as f:
                while block := f.read(CHUNK):
                    h.update(block)
                    self.write(fd, block)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.set_times(dst, st.st_atime_ns, st.st_mtime_ns)
        return h.hexdigest()

    def write_new(self, path: Path, data: bytes) -> None:
        """Create `path` with `data` and fsync it (O_EXCL: never overwrites)."""
        fd = self.open_new(path)
        try:
            self.write(fd, data)
            self.fsync(fd)
        finally:
            self.close(fd)

    def remove_quietly(self, path: Path) -> None:
        try:
            self.unlink(path)
        except FileNotFoundError:
            pass


def is_storage_error(e: BaseException) -> bool:
    """Whether an OSError concerns the library's storage (stop the run) rather than one photo."""
    return isinstance(e, OSError) and e.errno in STORAGE_ERRNOS


def tmp_name(path: Path) -> Path:
    """The temporary name used while `path` is being created: hidden, in the same folder."""
    raw = os.fsencode(path.name)
    name = path.name if len(raw) <= 200 else hashlib.sha1(raw).hexdigest()
    return path.with_name(f".{name}.sorter-tmp")
