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
import pickle
import re
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from whoosh import index as whoosh_index
from whoosh.fields import Schema
from whoosh.filedb.filestore import FileStorage
from whoosh.index import EmptyIndexError, Index

from indexer.cluster import cluster_write_lock
from indexer.shards import MANIFEST, is_sharded
from indexer.shipping import index_key

CURRENT = "CURRENT"
_GEN_RE = re.compile(r"^gen-(\d{6})$")
_TOC_RE = re.compile(r"^_MAIN_(\d+)\.toc$")


class IndexMissing(Exception):
    """There is no index at the configured place."""

    #: The error's code in JSON answers (API and ``--json``).
    code = "no_index"


class IndexBusy(Exception):
    """Another process is writing to this index."""

    code = "index_busy"


class ShardedUnsupported(Exception):
    """An operation that does not work on a sharded index yet."""

    code = "sharded_index"


class IndexDamaged(Exception):
    """The live generation cannot be read as it is (a truncated table of
    contents or segment); ``search check`` says more."""

    code = "index_damaged"


LOCK_FILE = ".writer.lock"
#: ``index --watch`` remembers the files of a watched folder it has indexed
#: in ``.watch-<digest>.json`` (one per folder) beside the generations.
WATCH_STATE_PREFIX = ".watch-"
WATCH_STATE_SUFFIX = ".json"
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
        self._current_path = os.path.join(self.root, CURRENT)
        #: ``change_token``'s last look: CURRENT's stat key, and the folder
        #: it named.
        self._polled: tuple[tuple[int, ...] | None, str | None] = (None, None)

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
        try:
            present = whoosh_index.exists_in(path)
        except Exception as err:  # a truncated or garbled table of contents
            raise IndexDamaged(
                f"{self.root}: generation {name} cannot be read ({_describe(err)}); run 'search check'"
            ) from None
        if not present and not is_sharded(path):
            raise IndexMissing(f"{self.root}: generation {name} is missing or damaged")
        return path

    def is_sharded(self) -> bool:
        """Whether the live generation is a sharded one (``indexer.shards``)."""
        name = self.current_name()
        return name is not None and is_sharded(self.root / name)

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

    def create_folder(self) -> tuple[str, Path]:
        """A new, empty generation folder (a sharded generation fills it);
        not live until ``switch_to``."""
        name = self._next_name()
        path = self.root / name
        path.mkdir(parents=True)
        return name, path

    def switch_to(self, name: str) -> None:
        """Make ``name`` the live generation, atomically."""
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / CURRENT)
        _fsync_dir(self.root)

    def repair_current(self) -> str | None:
        """Make the newest complete generation live when ``CURRENT`` is
        missing (or names no generation) but generations are there, so
        that a run neither starts an empty generation beside them nor, on
        its next rebuild, deletes them. Returns the generation made live,
        None when nothing needed repair; IndexDamaged when no generation is
        complete. The writer lock must be held."""
        if self.current_name() is not None:
            return None
        names = self.generations()
        if not names:
            return None
        for name in reversed(names):
            try:
                complete = whoosh_index.exists_in(self.root / name) or is_sharded(self.root / name)
            except Exception:  # noqa: BLE001 - a damaged generation is not a candidate
                complete = False
            if complete:
                self.switch_to(name)
                return name
        raise IndexDamaged(
            f"{self.root}: {CURRENT} is missing and none of {', '.join(names)} is a complete index; "
            f"rebuild it with 'search index --rebuild'"
        )

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
    def write_lock(self, timeout: float, cluster: str | None = None, sharding: bool = False) -> Iterator[None]:
        """Hold the index's writer lock: one indexing run (update or
        rebuild) at a time. The lock is the kernel's (flock), so a killed
        writer leaves nothing stale behind.

        ``cluster``: the Ray cluster (``ray_address``) a sharded index is
        written on. Its other machines may run writers too, which flock
        does not keep out, so a run on a sharded index, or one that makes
        it sharded (``sharding``), then also takes the cluster's lock
        (``cluster_write_lock``). An embedded Ray is one command's alone,
        and a plain index never starts Ray."""
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
            if cluster and (sharding or self.is_sharded()):
                with cluster_write_lock(cluster, index_key(self.root), timeout, str(self.root)):
                    yield
            else:
                yield
        finally:
            _held_locks.discard(fd)
            os.close(fd)  # closing the descriptor releases the lock

    # -- opening ----------------------------------------------------------

    def open(self, mapped: bool = True) -> Index:
        """The live index. ``mapped=False`` reads its segment files instead
        of memory-mapping them: Whoosh copies a mapped segment's terms and
        postings into memory when it opens it (a tenth of a second at
        20,000 documents), which a writer looking up a few ids need not
        pay for."""
        path = self.current_dir()
        if is_sharded(path):
            raise ShardedUnsupported(
                f"{self.root} is a sharded index ({path.name}): this command does not work on one yet; "
                f"searching it (query, show, stats, serve) and rebuilding it (index --rebuild --shards N) do"
            )
        try:
            if not mapped:
                return FileStorage(str(path), supports_mmap=False).open_index()
            return whoosh_index.open_dir(path)
        except Exception as err:
            raise IndexDamaged(
                f"{self.root}: generation {path.name} cannot be read ({_describe(err)}); run 'search check'"
            ) from None

    def open_checked(self) -> tuple[Index, dict[str, tuple[int, int]]]:
        """The live index, with each of its segment files' (size, inode),
        having checked every size against the one its own header gives.

        Segment files are memory-mapped: reading one that was cut short
        kills the process (SIGBUS) instead of raising. A searcher keeps
        these figures and compares them (a stat each) before every use."""
        ix = self.open()
        try:
            return ix, segment_files(ix)
        except IndexDamaged:
            raise
        except Exception as err:
            raise IndexDamaged(
                f"{self.root}: a segment cannot be read ({_describe(err)}); run 'search check'"
            ) from None

    def open_toc(self) -> tuple[Index, Any, dict[str, tuple[int, int]]]:
        """The live index, its latest table of contents (read once, so the
        segments and the files checked are the same commit's) and its
        segment files' (size, inode), as ``open_checked``. A serving worker
        calls this on every commit: the table of contents is read twice
        (Whoosh's open reads it to check it), not the four times that
        ``current_dir`` then ``open`` would."""
        name = self.current_name()
        if name is None:
            raise IndexMissing(f"no index in {self.root} (run 'search index PATH...' first)")
        try:
            ix = whoosh_index.open_dir(self.root / name)
            toc = ix._read_toc()  # no public accessor; Index.schema re-reads it each time
            return ix, toc, segment_files(ix, toc.segments)
        except IndexDamaged:
            raise
        except (EmptyIndexError, FileNotFoundError):
            raise IndexMissing(f"{self.root}: generation {name} is missing or damaged") from None
        except Exception as err:
            raise IndexDamaged(
                f"{self.root}: generation {name} cannot be read ({_describe(err)}); run 'search check'"
            ) from None

    def open_or_create(self, schema: Schema, mapped: bool = True) -> Index:
        if self.exists():
            return self.open(mapped)
        self.root.mkdir(parents=True, exist_ok=True)
        name, ix = self.create_generation(schema)
        self.switch_to(name)
        return ix

    def version(self) -> str:
        """Names what a reader would see now: generation and commit.

        Cheap (one small file read and a folder listing), so a long-lived
        searcher can ask it on every request and reopen only when it
        changed. It does not read the table of contents (``current_dir``
        does, to check it): unpickling it on every request took 4-6 % of a
        serving worker's CPU under load. A changed version is opened, and
        checked, by ``open_checked``.
        """
        name = self.current_name()
        if name is None:
            raise IndexMissing(f"no index in {self.root} (run 'search index PATH...' first)")
        try:
            tocs = [int(m[1]) for m in map(_TOC_RE.match, os.listdir(self.root / name)) if m]
        except FileNotFoundError:
            tocs = []
        if not tocs:
            try:
                # A sharded generation: its manifest is replaced on each commit.
                return f"{name}:m{os.stat(self.root / name / MANIFEST).st_mtime_ns}"
            except FileNotFoundError:
                raise IndexMissing(f"{self.root}: generation {name} is missing or damaged") from None
        return f"{name}:{max(tocs)}"

    def change_token(self) -> tuple[int, ...] | None:
        """Two stats that change whenever ``version`` may have: ``CURRENT``
        (replaced on each switch) and the live generation's folder (a
        commit adds a table of contents to it). A serving worker polls this
        five times a second for as long as it runs; reading ``CURRENT`` and
        building paths each time cost 0.35 ms of CPU a poll, so the name is
        read again only when ``CURRENT`` was replaced."""
        try:
            current = os.stat(self._current_path)
            key = (current.st_ino, current.st_mtime_ns, current.st_size)
            if key != self._polled[0]:
                name = self.current_name()
                self._polled = (key, os.path.join(self.root, name) if name else None)
            folder = self._polled[1]
            found = os.stat(folder) if folder else None
        except OSError:
            return None
        return (*key, found.st_ino if found else 0, found.st_mtime_ns if found else 0)

    def size_bytes(self) -> int:
        try:
            path = self.current_dir()
        except IndexMissing:
            return 0
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def segment_files(ix: Index, segments: list[Any] | None = None) -> dict[str, tuple[int, int]]:
    """Path -> (size, inode) of each compound segment file the table of
    contents names; IndexDamaged when one is missing or not the size its
    header says (Whoosh writes the directory of a compound file at its end
    and records where in its first bytes)."""
    out: dict[str, tuple[int, int]] = {}
    folder = Path(ix.storage.folder)
    for seg in ix._segments() if segments is None else segments:  # no public accessor
        if not seg.is_compound():
            continue
        name = seg.make_filename(seg.COMPOUND_EXT)
        path = folder / name
        try:
            info = path.stat()
            with ix.storage.open_file(name) as fh:
                expected = fh.read_long() + fh.read_int()
        except (OSError, EOFError, struct.error) as err:
            raise IndexDamaged(f"{folder.name}/{name} cannot be read ({_describe(err)}); run 'search check'") from None
        if info.st_size != expected:
            raise IndexDamaged(
                f"{folder.name}/{name} is {info.st_size} bytes where its header says {expected}; run 'search check'"
            )
        out[str(path)] = (info.st_size, info.st_ino)
    return out


def changed_files(files: dict[str, tuple[int, int]]) -> list[str]:
    """Which of the files (from ``segment_files``) are no longer what they were."""
    changed = []
    for path, (size, inode) in files.items():
        try:
            info = os.stat(path)
        except OSError:
            changed.append(path)
            continue
        if (info.st_size, info.st_ino) != (size, inode):
            changed.append(path)
    return changed


def is_read_error(err: BaseException) -> bool:
    """Whether an error came from reading damaged index files: what
    Whoosh's codec raises on a garbled block (a bare ``Exception`` whose
    message says so), truncated data or a broken pickle."""
    if isinstance(err, struct.error | EOFError | pickle.UnpicklingError | zlib.error | OSError):
        return True
    return type(err) is Exception and str(err).startswith("Block tag error")


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


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
