"""Atomic file writing: a reader never sees a half-written file, a crash never leaves one.

Every file the program writes goes through here: the bytes go to a temporary file in the same
folder, are flushed and fsynced, then renamed over the target (rename is atomic on POSIX).

Files and folders get the mode an ordinary ``open(..., "w")`` or ``mkdir`` would give under the
process umask (0644 and 0755 with umask 022), not the private 0600/0700 of ``tempfile``: a saved
model can be shared with a team or served from another account.

The program removes only what it wrote: a folder is replaced only by a new version of itself
(:func:`atomic_directory`), and training checkpoints are cleaned up file by file
(:func:`remove_checkpoints`), so a folder the user named keeps the user's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from ..errors import OutputError


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ modes
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc/self/status``,
    kernel >= 4.7); elsewhere set and restored at once under a lock (``os.umask`` is the only
    portable reader). The brief window uses 077, so a file another thread creates meanwhile is
    too private rather than too open."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the umask (0644 with umask 022)."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0o777 less the umask (0755 with umask 022)."""
    return 0o777 & ~current_umask()


# ------------------------------------------------------------------------------ atomic writes
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename), with the mode of
    an ordinary new file (:func:`file_mode`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())  # mkstemp's 0600 would survive the rename
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` whole, on error it is removed.

    Used for saved models: weights and config appear together or not at all. The folder gets
    the mode of an ordinary new folder and its files that of an ordinary new file
    (:func:`folder_mode`, :func:`file_mode`), whatever mode their writer gave them. An existing
    ``path`` is replaced only when every entry in it is rewritten by the new version (an
    earlier save of the same kind); a folder holding anything else (the user's files) is left
    as it is and :class:`OutputError` is raised.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp's 0700 would survive the rename
        yield tmp
        mode = file_mode()
        for child in tmp.iterdir():
            with open(child, "rb") as f:
                os.fchmod(f.fileno(), mode)  # some writers make theirs private (safetensors: 0600)
                os.fsync(f.fileno())
        old = None
        if path.exists():
            if not path.is_dir():
                raise OutputError(f"cannot write {path}: it exists and is not a folder")
            new = {c.name for c in tmp.iterdir()}
            foreign = sorted(c.name for c in path.iterdir() if c.name not in new)
            if foreign:
                raise OutputError(f"cannot write {path}: the folder holds files fgad did not write "
                                  f"({_listing(foreign)}); choose another folder")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # only names the new version rewrote (checked above)
        fsync_dir(path.parent)
    except OutputError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------ checkpoints
# What the training loop writes into a checkpoint folder: ``last/`` (through atomic_directory,
# whose interrupted temporaries are ``.last.*.tmp`` and ``.last.old-*``) holding these files.
CHECKPOINT_SUBDIR = "last"
CHECKPOINT_FILES = ("state.json", "state.safetensors")
# Present in a checkpoint folder that fgad created itself: only such a folder is removed.
CHECKPOINT_MARKER = ".fgad-checkpoints"


def checkpoint_folder(path: str | os.PathLike | None) -> Path | None:
    """The folder for training checkpoints at ``path``, created (with :data:`CHECKPOINT_MARKER`)
    when it does not exist yet; an existing folder is used as it is. ``None`` stays ``None``."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        # A plain write, not an atomic one: only the marker's presence counts, and a run killed
        # here must not leave a temporary file behind.
        try:
            path.mkdir(parents=True)
            (path / CHECKPOINT_MARKER).write_text("fgad created this folder for training checkpoints; "
                                                  "it is removed when training finishes.\n")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def remove_checkpoints(path: str | os.PathLike | None) -> None:
    """Remove the training checkpoints fgad wrote in ``path`` once they are no longer needed.

    Removes the files of the ``last/`` checkpoint (and ``last/`` once empty), leftover temporary
    checkpoint folders, and the marker; then ``path`` itself only if it is empty and fgad created
    it (:func:`checkpoint_folder`). Anything else in ``path`` is kept. Never raises for a file
    that is already gone or cannot be removed.
    """
    if path is None:
        return
    path = Path(path)
    if not path.is_dir():
        return
    last = path / CHECKPOINT_SUBDIR
    for name in CHECKPOINT_FILES:
        with contextlib.suppress(OSError):
            (last / name).unlink()
    with contextlib.suppress(OSError):
        last.rmdir()  # only when empty
    for leftover in list(path.iterdir()):
        name = leftover.name
        if leftover.is_dir() and not leftover.is_symlink() and (
                (name.startswith(f".{CHECKPOINT_SUBDIR}.") and name.endswith(".tmp"))
                or name.startswith(f".{CHECKPOINT_SUBDIR}.old-")):
            shutil.rmtree(leftover, ignore_errors=True)
    if [p.name for p in path.iterdir()] == [CHECKPOINT_MARKER]:  # fgad created it and nothing else is there
        with contextlib.suppress(OSError):
            (path / CHECKPOINT_MARKER).unlink()
            path.rmdir()
