"""Indexing crawl files as they land in a folder (``search index --watch``).

A crawler that drops a file every few minutes would otherwise start a
process per file, and each would load the dictionary and the table of
what the index holds before indexing anything. One watcher keeps both
loaded and runs once per group of new files; the table is checked against
the live commit before each run, since another process may have written.

A file is read once its size and modification time have stayed the same
for ``SETTLE_SECONDS`` (a crawler may still be writing it), and never while
it is hidden or named as unfinished (``.tmp``, ``.part``, ``.partial``), so
writing to such a name and renaming it when done is the way to hand a
file over. The files indexed (name, size and modification time) are kept
in a small state file in the index folder, so a restart does not read them
again; a file whose size or time changes is indexed again. (Running a file
twice would write nothing anyway: unchanged records are skipped.)

A stop request (``request_stop``, from SIGTERM or SIGINT) ends a run while
it reads, before anything is committed, so the previous commit stays live;
a run already committing finishes first.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indexer.config import Settings
from indexer.sources import CrawlFile, Discovery, file_format
from indexer.store import WATCH_STATE_PREFIX, WATCH_STATE_SUFFIX
from indexer.writer import IndexSummary, KnownCache, index_paths

#: Seconds a file's size and modification time must stay the same.
SETTLE_SECONDS = 1.0
#: Names of files still being written.
UNFINISHED_SUFFIXES = (".tmp", ".part", ".partial")


class Stopped(BaseException):
    """A stop was requested while a run read its files. A BaseException, so
    that no reader's error handling takes it for a bad file."""


def state_file(index: Path, folder: Path) -> Path:
    """Where the files indexed from ``folder`` are remembered: one file per
    watched folder, so two watchers never write the same one."""
    digest = hashlib.sha1(str(folder.resolve()).encode("utf-8")).hexdigest()[:12]
    return Path(index) / f"{WATCH_STATE_PREFIX}{digest}{WATCH_STATE_SUFFIX}"


@dataclass
class WatchRun:
    """One run: the files it read and what it did."""

    files: list[str]
    summary: IndexSummary


@dataclass
class _Observed:
    size: int
    mtime_ns: int
    since: float


@dataclass
class Watcher:
    """Watches ``folder`` and indexes what lands in it into ``settings.index``."""

    settings: Settings
    folder: Path
    poll: float = 2.0
    settle: float = SETTLE_SECONDS
    #: name (relative to the folder) -> (size, mtime_ns) of each file indexed.
    indexed: dict[str, tuple[int, int]] = field(default_factory=dict)
    cache: KnownCache = field(default_factory=KnownCache)
    _observed: dict[str, _Observed] = field(default_factory=dict)
    _unknown: set[str] = field(default_factory=set)
    _stopping: bool = False

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.indexed = self._load_state()

    # -- state ----------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return state_file(self.settings.index, self.folder)

    def _load_state(self) -> dict[str, tuple[int, int]]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return {name: (int(size), int(mtime)) for name, (size, mtime) in data["files"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # none yet, or unreadable: files are indexed again, which writes nothing new

    def _save_state(self) -> None:
        path = self.state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"folder": str(self.folder.resolve()), "files": {k: list(v) for k, v in sorted(self.indexed.items())}}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    # -- finding files ----------------------------------------------------------

    def _candidates(self) -> dict[str, tuple[Path, int, int]]:
        """name -> (path, size, mtime_ns) of every file that may be a crawl
        file: hidden files and folders and unfinished names left out."""
        found: dict[str, tuple[Path, int, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith(".") or filename.lower().endswith(UNFINISHED_SUFFIXES):
                    continue
                path = Path(dirpath, filename)
                try:
                    info = path.stat()
                except OSError:
                    continue  # gone since it was listed
                if not path.is_file():
                    continue
                found[path.relative_to(self.folder).as_posix()] = (path, info.st_size, info.st_mtime_ns)
        return found

    def ready(self, now: float | None = None) -> list[tuple[str, Path, int, int]]:
        """The new or changed files whose size and modification time have
        settled: (name, path, size, mtime_ns), in name order."""
        now = time.monotonic() if now is None else now
        candidates = self._candidates()
        for name in set(self._observed) - set(candidates):
            del self._observed[name]
        for name in set(self.indexed) - set(candidates):
            del self.indexed[name]  # gone: indexed again should it come back changed
        out = []
        for name, (path, size, mtime) in candidates.items():
            if self.indexed.get(name) == (size, mtime):
                continue
            seen = self._observed.get(name)
            if seen is None or (seen.size, seen.mtime_ns) != (size, mtime):
                self._observed[name] = _Observed(size, mtime, now)
                continue
            if now - seen.since >= self.settle:
                out.append((name, path, size, mtime))
        return out

    # -- running ----------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the watcher to stop. Safe in a signal handler: it only sets a
        flag (a handler taking a lock the interrupted code holds would wait
        for ever)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _sleep(self, seconds: float) -> None:
        """Wait, in short naps so that a stop request is seen soon."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def run(self, files: list[tuple[str, Path, int, int]]) -> WatchRun | None:
        """One indexing run over ``files``; None when none is of a format
        that can be read (such files are remembered, and named once)."""
        crawl_files = []
        unknown = []
        for name, path, _size, _mtime in files:
            fmt = file_format(path, named=True)
            if fmt is None:
                unknown.append(name)
            else:
                crawl_files.append(CrawlFile(path, self.folder, fmt, str(self.folder)))
        # No named paths: a file without one good record is reported by its
        # rejections, and does not stop the other files of the run.
        found = Discovery(files=crawl_files)
        self._unknown.update(unknown)
        summary = None
        if crawl_files:
            summary = index_paths(
                self.settings, [str(self.folder)], on_bytes=self._check_stop, discovery=found, cache=self.cache
            )
        for name, _path, size, mtime in files:
            self.indexed[name] = (size, mtime)
            self._observed.pop(name, None)
        self._save_state()
        if summary is None:
            return None
        return WatchRun([name for name, *_rest in files if name not in unknown], summary)

    def _check_stop(self, _nbytes: int) -> None:
        if self._stopping:
            raise Stopped

    def watch(
        self,
        on_run: Callable[[WatchRun], None],
        on_unknown: Callable[[str], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run until a stop is requested. ``on_error`` is told of a run that
        failed (the index busy, a full disk); its files are tried again
        at the next poll. Raises ``Stopped`` when a run was cut short."""
        while not self._stopping:
            files = self.ready()
            if files:
                try:
                    done = self.run(files)
                except Stopped:
                    raise
                except Exception as err:
                    if on_error is None:
                        raise
                    on_error(err)
                    self._sleep(self.poll)
                    continue
                else:
                    if done is not None:
                        on_run(done)
                    if on_unknown is not None:
                        for name in sorted(self._unknown):
                            on_unknown(name)
                    self._unknown.clear()
                continue  # look again at once: more may have landed meanwhile
            self._sleep(self._wait_for())

    def _wait_for(self) -> float:
        """The poll interval, or less when a file is settling."""
        if not self._observed:
            return self.poll
        now = time.monotonic()
        due = min(seen.since + self.settle for seen in self._observed.values()) - now
        return max(0.05, min(self.poll, due + 0.01))
