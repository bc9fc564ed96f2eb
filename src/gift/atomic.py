"""Atomic output directories: work happens in a hidden sibling that is renamed into place on success.

An interrupted command therefore leaves either nothing or the previous complete result.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import GiftError


def check_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse an existing non-empty `out` unless `overwrite`; call before any model work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GiftError(f"--out {out} exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise GiftError(f"--out {out} exists and is not empty; pass --overwrite to replace it or choose another path")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `out`; on success it replaces `out`, on error it is deleted."""
    out = check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; a published directory follows the umask
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, out)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: Path, out: Path) -> None:
    """Rename a finished `tmp` into place, replacing an earlier `out` only once `tmp` is complete."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def staging_dir(out: str | Path) -> Path:
    """Where a resumable command works: a visible `OUT.partial` sibling that survives a kill."""
    out = Path(out)
    return out.with_name(f"{out.name}.partial")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file through a temporary sibling and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


_HELD: dict[Path, int] = {}  # locks this process holds, so that a stage that claims its own inputs does not wait on itself


@contextlib.contextmanager
def claim(path: str | Path, locks: str | Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on `path` among the processes sharing it (flock on a file named for it in the folder `locks`,
    kept apart so that listing a folder of outputs never meets a lock), re-entrant within a process. Yields whether
    it is held: with `wait`, always, once any other holder lets go. Several `gift run --shard` processes share one OUT
    so: each stage is done by whichever claims it first. Lock files stay (removing one another process waits on would
    let two hold it)."""
    path = Path(path).resolve()
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield True
        finally:
            _HELD[path] -= 1
        return
    locks = Path(locks)
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        _HELD[path] = 1
        try:
            yield True
        finally:
            del _HELD[path]
            fcntl.flock(f, fcntl.LOCK_UN)

