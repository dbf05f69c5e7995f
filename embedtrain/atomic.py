"""Outputs that are never half-written: a temporary file beside the target, renamed over it
when complete (full disk, Ctrl-C, crash: the old file, or none, stays).

What each kind of target gets:

- ``-``: standard output, streamed (there is no file to replace);
- a symbolic link: the file it points to is replaced atomically; the link stays a link;
- a FIFO or character device (``/dev/null``, ``/dev/stdout``, a pipe): streamed to as it
  is, never replaced by a regular file;
- a block device, socket or directory: refused;
- a regular file: replaced atomically, keeping its permission bits (and owner, where the
  process may set it); a new file gets the mode ``open()`` would give it.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from embedtrain.errors import OutputError, OutputInterrupted
from embedtrain.signals import stop_requested

STDOUT = "-"
#: How often a FIFO output without a reader is tried again (and a stop signal noticed).
FIFO_POLL_SECONDS = 0.1
#: Characters of the target's name kept in the temporary name, so that the temporary
#: name (".NAME.XXXXXXXX.tmp") stays under the 255-byte limit of every common file system.
_TEMPORARY_NAME_CHARS = 100


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream for ``path``, which is replaced only if the block succeeds."""
    if str(path) == STDOUT:
        try:
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to stdout: {exc.strerror or exc}") from exc
        return
    target, existing = _final_target(path)
    if _streamed(existing):
        with _opened(target, "wb") as out:
            yield out
        return
    try:
        handle, temporary = _temporary_beside(target)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        _keep_mode(temporary, existing)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable(path: str | Path) -> None:
    """Fail early, before hours of training, if ``path`` cannot be written: the temporary
    file the write will use is created and removed here, in the same place."""
    if not str(path):
        raise OutputError("an output name is empty")
    if str(path) == STDOUT:
        return
    target, existing = _final_target(path)
    if _streamed(existing):
        if not os.access(target, os.W_OK):
            raise OutputError(f"cannot write {path}: permission denied")
        return
    directory = target.parent
    if not directory.is_dir():
        raise OutputError(f"cannot write {path}: directory {directory} does not exist")
    try:
        handle, temporary = _temporary_beside(target)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(handle)
    Path(temporary).unlink(missing_ok=True)


def _final_target(path: str | Path) -> tuple[Path, os.stat_result | None]:
    """The file a write to ``path`` must change and its status (None: it does not exist
    yet): a FIFO or character device as named (``/dev/stdout`` leads to a pipe with no
    path of its own); otherwise symbolic links followed (a dangling link gets its target
    created). Directories, block devices and sockets are refused."""
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        return Path(os.path.realpath(path)), None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if _streamed(existing):
        return Path(path), existing
    if stat.S_ISDIR(existing.st_mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    if not stat.S_ISREG(existing.st_mode):
        raise OutputError(f"cannot write {path}: not a regular file, FIFO or character device")
    return Path(os.path.realpath(path)), existing


def _streamed(existing: os.stat_result | None) -> bool:
    """FIFOs and character devices are written in place: they cannot be replaced."""
    return existing is not None and (
        stat.S_ISFIFO(existing.st_mode) or stat.S_ISCHR(existing.st_mode)
    )


@contextmanager
def _opened(target: Path, mode: str) -> Iterator[BinaryIO]:
    try:
        if stat.S_ISFIFO(os.stat(target).st_mode):
            out = os.fdopen(_open_fifo(target), mode)
        else:
            out = open(target, mode)  # noqa: SIM115 -- closed below
        with out:
            yield out
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc


def _open_fifo(target: Path) -> int:
    """A FIFO opened for writing: like ``open()``, it waits for a reader, but in short
    polls, so that a stop signal ends the wait (:class:`OutputInterrupted`) where a
    blocking ``open()`` would be restarted after the signal's handler and wait on."""
    while True:
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            if stop_requested():
                raise OutputInterrupted(
                    f"interrupted while {target} (a FIFO) waited for a reader; nothing was "
                    "written to it"
                ) from None
            time.sleep(FIFO_POLL_SECONDS)
            continue
        os.set_blocking(descriptor, True)
        return descriptor


def _temporary_beside(target: Path) -> tuple[int, str]:
    prefix = f".{target.name[:_TEMPORARY_NAME_CHARS]}."
    return tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)


def _keep_mode(temporary: str, previous: os.stat_result | None) -> None:
    """The replaced file's permission bits and owner, or a new file's default mode
    (mkstemp's 0600 would hide a new output; 0644 would expose a private one)."""
    if previous is None:
        os.chmod(temporary, _new_file_mode())
        return
    os.chmod(temporary, stat.S_IMODE(previous.st_mode))
    try:
        os.chown(temporary, previous.st_uid, previous.st_gid)
    except PermissionError:  # only root may give a file away; the mode is what matters
        pass


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask, read without
    changing it (setting it, even briefly, would race with other threads' files)."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        mask = int(line.split()[1], 8)
    except (OSError, StopIteration):  # no /proc: the classic read-and-restore
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask
