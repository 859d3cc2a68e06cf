"""Atomic file writes shared by images, weight files and training checkpoints.

A file is written to a temporary name in the target's folder, flushed to disk, given the permissions
a normal ``open()`` would give it (``mkstemp`` makes private 0600 files), then renamed into place, so
a crash or a kill at any moment leaves either the previous file or the complete new one. Without
``overwrite`` the final step is a hard link, which fails if the target appeared meanwhile: an existing
file is never replaced, even by a concurrent writer.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


def _read_umask() -> int:
    """The process umask, read without changing it where the kernel shows it (Linux >= 4.7).

    ``os.umask`` can only be read by setting it, which races with other threads creating files (the
    server derains in a thread pool): that is done once, at import, only where /proc cannot tell.
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return _IMPORT_UMASK


def _umask_at_import() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_at_import()


def _umask_mode() -> int:
    return 0o666 & ~_read_umask()


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        if not directory:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` to write to; on success it becomes ``target``.

    The temporary name keeps ``target``'s suffix (Pillow picks the format from it). Raises
    ``FileExistsError`` when ``target`` exists and ``overwrite`` is false; on any error the temporary
    file is removed and ``target`` is untouched.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with atomic_path(folder / "a.txt") as tmp:
        ...     _ = tmp.write_text("done")
        >>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
        ('done', ['a.txt'])
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (pass overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, _umask_mode())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails with FileExistsError instead of replacing
            except FileExistsError:
                raise FileExistsError(f"{target} exists (pass overwrite to replace it)") from None
            except OSError:  # no hard links on this filesystem: check, then rename
                if target.exists():
                    raise FileExistsError(f"{target} exists (pass overwrite to replace it)") from None
                os.replace(tmp, target)
        with contextlib.suppress(OSError):
            _fsync(target.parent, directory=True)
    finally:
        tmp.unlink(missing_ok=True)
