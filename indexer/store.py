"""Where an index lives on disk, and which generation of it is live.

An index folder holds one or more generations (``gen-000001/``, each a
complete Whoosh index) and a ``CURRENT`` file naming the live one. Readers
open whatever ``CURRENT`` names; a full rebuild writes a new generation
beside it and replaces ``CURRENT`` atomically, so searches never see a
half-built index. Incremental updates go into the live generation, whose
own commits are atomic (Whoosh writes new segments, then a new table of
contents).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from whoosh import index as whoosh_index
from whoosh.fields import Schema
from whoosh.index import Index

CURRENT = "CURRENT"
_GEN_RE = re.compile(r"^gen-(\d{6})$")
_TOC_RE = re.compile(r"^_MAIN_(\d+)\.toc$")


class IndexMissing(Exception):
    """There is no index at the configured place."""


class IndexBusy(Exception):
    """Another process is writing to this index."""


LOCK_FILE = ".writer.lock"
#: Descriptors of writer locks this process holds (a forked worker closes
#: its copies so that the lock dies with the process that took it).
_held_locks: set[int] = set()


def release_inherited_locks() -> None:
    while _held_locks:
        try:
            os.close(_held_locks.pop())
        except OSError:
            pass


class IndexStore:
    """The generations of one index folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"IndexStore({str(self.root)!r})"

    # -- generations ------------------------------------------------------

    def current_name(self) -> str | None:
        try:
            name = (self.root / CURRENT).read_text(encoding="ascii").strip()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None
        return name if _GEN_RE.match(name) else None

    def current_dir(self) -> Path:
        name = self.current_name()
        if name is None:
            raise IndexMissing(f"no index in {self.root} (run 'search index PATH...' first)")
        path = self.root / name
        if not whoosh_index.exists_in(path):
            raise IndexMissing(f"{self.root}: generation {name} is missing or damaged")
        return path

    def exists(self) -> bool:
        try:
            self.current_dir()
        except IndexMissing:
            return False
        return True

    def generations(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if _GEN_RE.match(p.name) and p.is_dir())

    def _next_name(self) -> str:
        numbers = [int(_GEN_RE.match(g)[1]) for g in self.generations()]
        current = self.current_name()
        if current:
            numbers.append(int(_GEN_RE.match(current)[1]))
        return f"gen-{max(numbers, default=0) + 1:06d}"

    def create_generation(self, schema: Schema) -> tuple[str, Index]:
        """A new, empty generation; not live until ``switch_to``."""
        name = self._next_name()
        path = self.root / name
        path.mkdir(parents=True)
        return name, whoosh_index.create_in(path, schema)

    def switch_to(self, name: str) -> None:
        """Make ``name`` the live generation, atomically."""
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)

    def remove_generation(self, name: str) -> None:
        """Delete a generation that never went live (a refused or failed
        rebuild); never the live one."""
        if _GEN_RE.match(name) and name != self.current_name():
            shutil.rmtree(self.root / name, ignore_errors=True)

    def remove_stale_generations(self, keep: str | None = None) -> list[str]:
        """Delete every generation but the live one (and ``keep``: the one
        just replaced, so searchers that still have it open can finish);
        returns what went."""
        live = self.current_name()
        removed = []
        for name in self.generations():
            if name not in (live, keep):
                shutil.rmtree(self.root / name, ignore_errors=True)
                removed.append(name)
        return removed

    @contextmanager
    def write_lock(self, timeout: float) -> Iterator[None]:
        """Hold the index's writer lock: one indexing run (update or
        rebuild) at a time. The lock is the kernel's (flock), so a killed
        writer leaves nothing stale behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise IndexBusy(
                            f"another process is writing to {self.root} and did not finish within {timeout:.0f} s"
                        ) from None
                    time.sleep(0.2)
            _held_locks.add(fd)
            yield
        finally:
            _held_locks.discard(fd)
            os.close(fd)  # closing the descriptor releases the lock

    # -- opening ----------------------------------------------------------

    def open(self) -> Index:
        return whoosh_index.open_dir(self.current_dir())

    def open_or_create(self, schema: Schema) -> Index:
        if self.exists():
            return self.open()
        self.root.mkdir(parents=True, exist_ok=True)
        name, ix = self.create_generation(schema)
        self.switch_to(name)
        return ix

    def version(self) -> str:
        """Names what a reader would see now: generation and commit.

        Cheap (two small file reads), so a long-lived searcher can ask it on
        every request and reopen only when it changed.
        """
        path = self.current_dir()
        tocs = [int(m[1]) for m in map(_TOC_RE.match, os.listdir(path)) if m]
        return f"{path.name}:{max(tocs, default=-1)}"

    def size_bytes(self) -> int:
        try:
            path = self.current_dir()
        except IndexMissing:
            return 0
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _fsync_dir(path: Path) -> None:
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
