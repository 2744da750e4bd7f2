"""Serving while crawls are indexed: `search serve --workers 2` under N
closed-loop clients sending searches never sent before in the run (so the
per-commit answer cache never helps), through every phase in one run, and
what each commit costs the serving workers.

Phases (``--phases`` picks a subset; they run in this order):

- idle: ``--idle-seconds`` of load with no indexing (after an uncounted warm-up);
- during: a ``--batch-size`` batch every ``--batch-every`` s for ``--during-seconds``;
- after: the ``--idle-seconds`` after the last batch finished;
- rebuild: ``search index --rebuild`` of the whole crawl under load: the
  longest stretch and the 1-s windows with no request completed;
- rebuilt: ``--idle-seconds`` of load on the rebuilt index, which holds the
  after phase's documents (after over rebuilt: what the batches' segments
  cost, apart from the documents they added);
- rapid: a ``--rapid-size`` batch every ``--rapid-every`` s for ``--rapid-seconds``,
  a ``search index`` command each;
- rapid_watch: the same, each batch a file landing in the folder of one
  ``search index --watch`` process (the README's way for frequent crawls);
- commit_cost, rss: no client load; ``--commits`` batches, each worker's CPU
  per commit (less that of the same requests over the same time without
  a commit) and memory;
- soak_mix: soak.py's mostly cached mix, without and with batches;
- query_cpu: CPU of ~300 fresh queries on the index after incremental
  batches and on a fresh rebuild of the same documents.

Batches add articles (lines of several poems and a unique marker), update
earlier batch articles (a new version marker) and delete some; each batch's
summary must count what was sent. At the end every document of the final
crawl is fetched by id: lost, stale and resurrected ones are counted, and
the exit status is 1 on any of them or on any error. Only loopback
traffic; every loop is bounded in time.

    python benchmarks/serving.py --clients 16 [--index BUILT_INDEX] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "poetry-20k.jsonl"
DEFAULT_QUERIES = ROOT.parent / "shared" / "corpora" / "queries" / "knownitem_poetry.queries.jsonl"
PHASES = (
    "idle",
    "during",
    "after",
    "rebuild",
    "rebuilt",
    "rapid",
    "rapid_watch",
    "commit_cost",
    "rss",
    "soak_mix",
    "query_cpu",
)
LOAD_PHASES = ("idle", "during", "after", "rebuild", "rebuilt", "rapid", "rapid_watch")
#: Share of the clients' searches that ask for facets (the search page does).
FACETS_SHARE = 0.1
#: In a batch, per record: updates of earlier batch articles, and deletions.
UPDATE_SHARE, DELETE_SHARE = 0.2, 0.1
#: Seconds between polls for a new document, and how long to poll at most.
POLL_SECONDS, POLL_LIMIT = 0.05, 60.0
#: How long a worker may take to open a commit before the figure is marked
#: unconfirmed, and the pause after it before its CPU is read again.
REOPEN_LIMIT, SETTLE_SECONDS = 30.0, 1.0
#: Seconds a request or an indexing command may take.
REQUEST_TIMEOUT, COMMAND_TIMEOUT = 30.0, 900.0
_CJK_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]{2,}")


def _sibling(name: str) -> ModuleType:
    """A benchmark beside this one, loaded from its file: the folder is not
    a package, and the tests load this file by its path too."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    module_name = f"zhsearch_benchmark_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


load = _sibling("load")
soak = _sibling("soak")
percentile = load.percentile
get = soak.get
search_cmd = soak.search_cmd
write_jsonl = soak.write_jsonl


def answer(url: str) -> tuple[int, bytes]:
    """soak's ``get``, with no answer as status 0 and the reason as the
    body: a client counts it and goes on (a client thread that died of an
    unexpected exception silently lowered the load)."""
    try:
        return get(url, timeout=REQUEST_TIMEOUT)
    except Exception as err:
        return 0, f"{type(err).__name__}: {err}".encode()


# --------------------------------------------------------------------------
# Clients and their figures
# --------------------------------------------------------------------------


class Clients:
    """Closed-loop client threads, each sending its next request when the
    last one is answered. Every completed request is kept with the time it
    completed, so that phases are windows of one continuous load and the
    rebuild's silent stretches can be found."""

    def __init__(self, count: int, next_url: Callable[[random.Random], str], seed: int = 1) -> None:
        self.count = count
        self.next_url = next_url
        self.seed = seed
        #: (completed at, milliseconds, HTTP status or 0 for no answer)
        self.done: list[tuple[float, float, int]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Clients:
        self._threads = [
            threading.Thread(target=self._client, args=(self.seed * 1000 + n,), daemon=True) for n in range(self.count)
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        deadline = time.monotonic() + REQUEST_TIMEOUT + 10
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))

    def _client(self, seed: int) -> None:
        r = random.Random(seed)
        while not self._stop.is_set():
            url = self.next_url(r)
            started = time.perf_counter()
            status, body = answer(url)
            elapsed = (time.perf_counter() - started) * 1000
            with self._lock:
                self.done.append((time.monotonic(), elapsed, status))
                if status != 200:
                    self.errors.append(f"{status} {url} {body[:160].decode(errors='replace')!r}")

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Requests completed in [start, end): count, errors, rate and latency."""
        with self._lock:
            inside = [d for d in self.done if start <= d[0] < end]
        latencies = [ms for _t, ms, _s in inside]
        failed = Counter(str(s) for _t, _ms, s in inside if s != 200)
        seconds = max(end - start, 1e-9)
        return {
            "seconds": round(seconds, 1),
            "requests": len(inside),
            "errors": sum(failed.values()),
            "error_statuses": dict(failed),
            "queries_per_second": round((len(inside) - sum(failed.values())) / seconds, 2),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
        }

    def silences(self, start: float, end: float) -> dict[str, Any]:
        """The longest stretch in [start, end] with no request completed,
        and how many of its 1-s windows saw none completed."""
        with self._lock:
            times = sorted(t for t, _ms, _s in self.done if start <= t <= end)
        marks = [start, *times, end]
        bins = max(1, math.ceil(end - start))
        busy = {min(bins - 1, int(t - start)) for t in times}
        return {
            "longest_gap_seconds": round(max(b - a for a, b in zip(marks, marks[1:], strict=False)), 2),
            "zero_windows": bins - len(busy),
            "windows": bins,
        }


class UncachedQueries:
    """Search URLs whose query was never sent before in this run: the dev
    queries first, then random pairs of title words of the corpus. A
    repeated query is answered from the worker's per-commit cache, which
    would hide what searching costs while commits land."""

    def __init__(self, base: str, dev: list[str], words: list[str]) -> None:
        self.base = base
        self.words = words
        self._dev = iter(dev)
        self._sent: set[str] = set()
        self._lock = threading.Lock()

    def next_query(self, r: random.Random) -> str:
        with self._lock:
            for q in self._dev:
                if q not in self._sent:
                    self._sent.add(q)
                    return q
            for _ in range(1000):
                q = " ".join(r.sample(self.words, 2))
                if q not in self._sent:
                    self._sent.add(q)
                    return q
        raise RuntimeError("no unsent pair of title words left")

    def __call__(self, r: random.Random) -> str:
        q = self.next_query(r)
        facets = "true" if r.random() < FACETS_SHARE else "false"
        return f"{self.base}/api/search?" + urllib.parse.urlencode({"q": q, "size": 10, "facets": facets})


def title_words(poems: Iterable[dict]) -> list[str]:
    """Distinct words (two or more CJK characters) of the titles, cut the
    way the index cuts text (jieba's dictionary)."""
    import rjieba

    words = {w for p in poems for w in rjieba.cut(p.get("title") or "") if _CJK_WORD.fullmatch(w)}
    return sorted(words)


# --------------------------------------------------------------------------
# The crawl, its batches and the index
# --------------------------------------------------------------------------


class Crawl:
    """What the index must hold: the documents it started with (never
    touched) and the batch articles in their latest version, less the
    deleted ones. Batch articles are lines of several different poems and
    a marker with their id and version, so that no two are near-duplicates
    (the indexer drops those) and a stale version is recognisable."""

    def __init__(self, originals: dict[str, dict], poems: list[dict], seed: int = 7) -> None:
        self.originals = originals
        self.poems = [p for p in poems if (p.get("body") or "").strip()]
        self.rng = random.Random(seed)
        self.versions: dict[str, int] = {}
        self.records: dict[str, dict] = {}
        self.deleted: set[str] = set()
        self.batches = 0
        #: Incremental batches since the last rebuild (query_cpu's figure).
        self.since_rebuild = 0
        self.docs_since_rebuild = 0

    def article(self, doc_id: str, version: int) -> dict:
        """Two lines of each of four poems and the marker: a body no other
        document resembles, titled (and attributed) as the first poem."""
        first, *others = self.rng.sample(self.poems, 4)
        lines = []
        for poem in (first, *others):
            poem_lines = [x for x in poem["body"].splitlines() if x.strip()]
            lines.extend(self.rng.sample(poem_lines, min(2, len(poem_lines))))
        return {
            "id": doc_id,
            "title": first.get("title") or doc_id,
            "body": "\n".join([*lines, f"{doc_id} 版本{version}。"]),
            "tags": [],
            "published": first.get("published"),
            "source": first.get("source"),
            "author": first.get("author"),
        }

    def next_batch(
        self, size: int, pending: set[str] | frozenset[str] = frozenset()
    ) -> tuple[list[dict], dict[str, int], str]:
        """The next batch's records, the counts its summary must show, and
        one of its new ids (to watch for). The crawl changes when the
        index has taken them (``apply``): a batch whose command failed
        left the index as it was, and the final check expects that.
        ``pending``: ids of batches handed over but not yet indexed, left
        alone (a watcher may index two batches in one run)."""
        n = self.batches
        self.batches += 1
        live = sorted(d for d in self.versions if d not in pending)
        updates = self.rng.sample(live, min(int(size * UPDATE_SHARE), len(live)))
        chosen = set(updates)
        rest = [d for d in live if d not in chosen]
        removals = self.rng.sample(rest, min(int(size * DELETE_SHARE), len(rest)))
        new_ids = [f"batch{n}-{i}" for i in range(size - len(updates) - len(removals))]
        records = [
            *(self.article(d, self.versions[d] + 1) for d in updates),
            *({"id": d, "deleted": True} for d in removals),
            *(self.article(d, 1) for d in new_ids),
        ]
        expected = {"added": len(new_ids), "updated": len(updates), "deleted": len(removals)}
        return records, expected, new_ids[0]

    def apply(self, records: list[dict]) -> None:
        """The index took these records (from ``next_batch``)."""
        for r in records:
            if r.get("deleted"):
                del self.versions[r["id"]], self.records[r["id"]]
                self.deleted.add(r["id"])
            else:
                self.versions[r["id"]] = self.versions.get(r["id"], 0) + 1
                self.records[r["id"]] = r
        self.since_rebuild += 1
        self.docs_since_rebuild += len(records)

    def everything(self) -> Iterator[dict]:
        """Every live document as a record, for a rebuild."""
        yield from self.originals.values()
        yield from self.records.values()


def search_json(index: Path, *args: str) -> dict[str, Any]:
    """``search --index DIR ARGS --json`` in a session of its own (a
    rebuild's helper processes go with it when it is stopped), its answer."""
    cmd = [*search_cmd(), "--index", str(index), *args, "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"search {' '.join(args[:-1])} exited {proc.returncode}: {(out + err)[-400:]}")
    return json.loads(out)


class Bench:
    """The index folder, the running server and the batch bookkeeping of
    one run: indexing commands, what their summaries said, how soon each
    batch was findable, and every error."""

    def __init__(self, work: Path, index: Path, crawl: Crawl) -> None:
        self.work = work
        self.index = index
        self.crawl = crawl
        self.base = ""
        self.errors: list[str] = []
        self.freshness: list[dict[str, Any]] = []
        #: The phase running (each freshness figure is kept with it).
        self.phase = "setup"
        self.summaries: Counter[str] = Counter()
        self._watchers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def index_records(
        self, name: str, records: list[dict], expected: dict[str, int], *args: str, index: Path | None = None
    ) -> tuple[dict[str, Any], float, float]:
        """Index one file of records: the summary, and when the command
        started and returned (writing the file is not the index's time). A
        summary that does not count what was sent (a record dropped as a
        near-duplicate, say) is an error."""
        path = write_jsonl(self.work / f"{name}.jsonl", records)
        started = time.monotonic()
        try:
            summary = search_json(index or self.index, "index", *args, str(path))
        except (RuntimeError, ValueError) as err:
            self.error(f"{name}: {err}")
            return {}, started, time.monotonic()
        returned = time.monotonic()
        path.unlink()
        got = {k: summary.get(k) for k in expected}
        self.summaries.update({"records": len(records), "duplicates": len(summary.get("duplicates") or [])})
        self.summaries.update({"rejected": summary.get("rejected_count") or 0})
        if got != expected or summary.get("duplicates") or summary.get("rejected_count"):
            self.summaries["mismatched"] += 1
            dups = (summary.get("duplicates") or [])[:3]
            self.error(f"{name}: sent {expected}, the summary says {got}; duplicates {dups}")
        return summary, started, returned

    def batch(self, size: int, watch: bool = True) -> tuple[str | None, float]:
        """Index the next batch (one command, one at a time); returns a new
        id of it (None when the command failed) and when the command
        returned. With ``watch``, a thread times how soon that id is served."""
        records, expected, new_id = self.crawl.next_batch(size)
        summary, _started, returned = self.index_records(f"batch-{self.crawl.batches - 1}", records, expected)
        if not summary:
            self.summaries["failed"] += 1
            return None, returned
        self.crawl.apply(records)
        if watch:
            t = threading.Thread(target=self._watch, args=(new_id, returned, "command"), daemon=True)
            t.start()
            self._watchers.append(t)
        return new_id, returned

    def _watch(self, doc_id: str, since: float, kind: str) -> None:
        """Time how soon a batch's new article is served: from its command's
        return ("command") or from its file landing in the watched folder
        ("watched": that includes the watcher settling and indexing it)."""
        phase = self.phase
        seconds, _polls = self.wait_findable(doc_id, since)
        with self._lock:
            self.freshness.append({"id": doc_id, "seconds": seconds, "kind": kind, "phase": phase})
        if seconds is None:
            self.error(f"{doc_id} was not served within {POLL_LIMIT:.0f} s of its batch")

    def wait_findable(self, doc_id: str, since: float) -> tuple[float | None, int]:
        """Seconds from ``since`` until /api/doc/<id> answers 200 (None when
        it never did within the limit), and how many requests that took."""
        url = f"{self.base}/api/doc/{urllib.parse.quote(doc_id)}?related=0"
        polls = 0
        while time.monotonic() - since < POLL_LIMIT:
            polls += 1
            if answer(url)[0] == 200:
                return time.monotonic() - since, polls
            time.sleep(POLL_SECONDS)
        return None, polls

    def join_watchers(self) -> None:
        for t in self._watchers:
            t.join(timeout=POLL_LIMIT + REQUEST_TIMEOUT)
        self._watchers.clear()

    def batches_every(self, size: int, every: float, seconds: float) -> tuple[float, float, int]:
        """A batch every ``every`` s (start to start; the next one at once
        when one took longer) for ``seconds``; at least one. Returns the
        start, when the last one returned, and how many ran."""
        start = time.monotonic()
        count = 0
        end = start
        while count == 0 or start + count * every < start + seconds:
            time.sleep(max(0.0, start + count * every - time.monotonic()))
            _id, end = self.batch(size)
            count += 1
        return start, end, count

    def batches_watched(self, size: int, every: float, seconds: float, poll: float) -> dict[str, Any]:
        """``batches_every`` through one ``search index --watch`` process:
        each batch is written under a ``.part`` name and renamed into the
        watched folder (the hand-over the watcher documents). Returns the
        start, when the last batch was indexed, how many were handed over,
        and the watcher's runs. Freshness counts from the rename."""
        folder = self.work / "landing"
        folder.mkdir(exist_ok=True)
        cmd = [
            *search_cmd(),
            "--index",
            str(self.index),
            "index",
            "--watch",
            str(folder),
            "--poll",
            str(poll),
            "--json",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        handed: dict[str, tuple[list[dict], dict[str, int], str, float]] = {}
        indexed: dict[str, float] = {}
        runs: list[int] = []
        done = threading.Condition()

        def read_runs() -> None:
            for line in proc.stdout:
                try:
                    out = json.loads(line)
                except ValueError:
                    continue
                names = out.get("watched")
                if names is None:
                    continue
                with done:
                    self._took_watched(out, names, handed, indexed)
                    runs.append(len(names))
                    done.notify_all()

        reader = threading.Thread(target=read_runs, daemon=True)
        reader.start()
        start = time.monotonic()
        count = 0
        try:
            while count == 0 or start + count * every < start + seconds:
                time.sleep(max(0.0, start + count * every - time.monotonic()))
                with done:
                    pending = {
                        r["id"] for name, (records, *_rest) in handed.items() if name not in indexed for r in records
                    }
                    records, expected, new_id = self.crawl.next_batch(size, pending)
                name = f"batch-{self.crawl.batches - 1:05d}.jsonl"
                part = write_jsonl(folder / f"{name}.part", records)
                with done:
                    landed = time.monotonic()
                    os.rename(part, folder / name)
                    handed[name] = (records, expected, new_id, landed)
                t = threading.Thread(target=self._watch, args=(new_id, landed, "watched"), daemon=True)
                t.start()
                self._watchers.append(t)
                count += 1
            deadline = time.monotonic() + POLL_LIMIT
            with done:
                while len(indexed) < len(handed) and proc.poll() is None and time.monotonic() < deadline:
                    done.wait(timeout=1.0)
                end = max(indexed.values(), default=time.monotonic())
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join(timeout=10)
        if proc.returncode != 0:
            self.error(f"the watcher exited {proc.returncode} on SIGTERM: {proc.stderr.read()[-400:]}")
        missing = sorted(set(handed) - set(indexed))
        if missing:
            self.summaries["failed"] += len(missing)
            self.error(f"the watcher did not index {len(missing)} batches: {missing[:3]}")
        return {
            "start": start,
            "end": end,
            "batches": count,
            "runs": len(runs),
            "files_per_run_max": max(runs, default=0),
        }

    def _took_watched(self, out: dict, names: list[str], handed: dict, indexed: dict[str, float]) -> None:
        """A watcher run's summary line: its files' batches are in the
        index (the crawl takes them) if the summary counts what they held."""
        expected: Counter[str] = Counter()
        for name in names:
            if name in handed:
                expected.update(handed[name][1])
        got = {k: out.get(k) for k in ("added", "updated", "deleted")}
        self.summaries.update({"records": sum(len(handed[n][0]) for n in names if n in handed)})
        self.summaries.update(
            {"duplicates": len(out.get("duplicates") or []), "rejected": out.get("rejected_count") or 0}
        )
        if got != {k: expected.get(k, 0) for k in got} or out.get("duplicates") or out.get("rejected_count"):
            self.summaries["mismatched"] += 1
            self.error(f"watcher run over {names[:3]}: sent {dict(expected)}, the summary says {got}")
        now = time.monotonic()
        for name in sorted(names):
            if name in handed and name not in indexed:
                self.crawl.apply(handed[name][0])
                indexed[name] = now

    def rebuild(self, into: Path | None = None) -> tuple[dict[str, Any], float, float]:
        """``search index --rebuild`` of every live document, of the live
        index or ``into`` another folder: the summary, and when the
        command started and returned."""
        records = list(self.crawl.everything())
        summary, started, returned = self.index_records(
            "all", records, {"added": len(records)}, "--rebuild", index=into
        )
        if into is None:
            self.crawl.since_rebuild = self.crawl.docs_since_rebuild = 0
        return summary, started, returned


# --------------------------------------------------------------------------
# The server's workers, from /proc
# --------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from its third field on (the name may hold spaces)."""
    data = Path(f"/proc/{pid}/stat").read_text()
    return data[data.rindex(")") + 2 :].split()


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers: the children of the master process."""
    children: set[int] = set()
    try:
        for task in Path(f"/proc/{master}/task").iterdir():
            children.update(int(p) for p in (task / "children").read_text().split())
        return sorted(children)
    except OSError:
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == master:
                    children.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return sorted(children)


class WorkerWatch:
    """The server's worker processes, looked at twice a second: gunicorn
    replaces a worker that stayed silent for its timeout, and the requests
    it held, its warm-up and its memory figures go with it."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen: set[int] = set(worker_pids(master))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._look, daemon=True)

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _look(self) -> None:
        while not self._stop.wait(0.5):
            self.seen.update(worker_pids(self.master))

    def replaced(self, workers: int) -> int:
        return max(0, len(self.seen) - workers)


def cpu_ms(pid: int) -> float:
    """CPU time of a process's threads, in ms, to the nanosecond: the
    scheduler's own count (``/proc/PID/task/*/schedstat``), where the
    user and system times of ``/proc/PID/stat`` move in 10 ms ticks, as
    coarse as the per-commit cost being measured. A serving worker's
    threads (requests, refresher) live as long as it does, so none of its
    CPU goes with a thread that ended."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue
    return total / 1e6


def rss_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def opened_files(pid: int) -> set[str]:
    """Files a process has mapped or open (a searcher maps its segments)."""
    found = set()
    try:
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6:
                found.add(os.path.realpath(parts[5].strip()))
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                found.add(os.path.realpath(os.readlink(fd)))
            except OSError:
                continue
    except OSError:
        pass
    return found


def live_segments(index: Path) -> set[str]:
    """Paths of the live generation's segment files."""
    from indexer.store import IndexStore, segment_files

    return {os.path.realpath(p) for p in segment_files(IndexStore(index).open())}


# --------------------------------------------------------------------------
# Phases without client load
# --------------------------------------------------------------------------


def commit_series(bench: Bench, master: int, commits: int, size: int) -> tuple[dict, dict]:
    """Worker CPU per commit and worker memory over ``commits`` batches.

    A worker opens a commit in a thread of its own or on its next request;
    either way, after each batch the new id is polled for until served,
    then workers are sent requests until each has the new segment mapped,
    then after a second more each worker's CPU is read. The same requests,
    sent again with no commit over as long a time, give what the requests
    and the workers' own polling cost without a commit; their total is
    shared out evenly over the workers and subtracted. A batch
    whose command failed, or during which a worker was replaced, is not
    measured (and counted)."""
    bench.join_watchers()
    workers = worker_pids(master)
    rss_before = {str(p): rss_mb(p) for p in workers}
    raw: list[list[float]] = []
    baselines: list[float] = []
    requests: list[int] = []
    unconfirmed = failed = disturbed = 0
    for _ in range(commits):
        try:
            measured = _one_commit(bench, workers, size)
        except OSError:  # a worker went away: its /proc entry with it
            disturbed += 1
            workers = worker_pids(master)
            continue
        if measured is None:
            failed += 1
            continue
        deltas, baseline, sent, confirmed = measured
        raw.append(deltas)
        baselines.append(baseline)
        requests.append(sent)
        unconfirmed += not confirmed
    if disturbed:
        bench.error(f"workers were replaced during {disturbed} of the commits")
    baseline = statistics.median(baselines) if baselines else 0.0
    net = [max(0.0, ms - baseline / len(workers)) for row in raw for ms in row]
    cost = {
        "batch_size": size,
        "commits": commits,
        "measured": len(raw),
        "failed": failed,
        "workers": len(workers),
        "median_ms_per_worker_per_commit": round(statistics.median(net), 1) if net else None,
        "max_ms_per_worker_per_commit": round(max(net), 1) if net else None,
        "raw_ms": [[round(ms, 1) for ms in row] for row in raw],
        "baseline_ms_all_workers": round(baseline, 1),
        "requests_per_commit": round(statistics.median(requests), 1) if requests else None,
        "reopen_unconfirmed": unconfirmed,
    }
    rss = {"before_commits_mb": rss_before, "after_commits_mb": {str(p): rss_mb(p) for p in worker_pids(master)}}
    return cost, rss


def _one_commit(bench: Bench, workers: list[int], size: int) -> tuple[list[float], float, int, bool] | None:
    """One batch of ``commit_series``: each worker's CPU from before the
    batch until a second after every worker had it open, that of the same
    requests without a commit (all workers), how many requests were sent
    and whether every worker was seen with the new segments. None when
    the batch's command failed."""
    health = f"{bench.base}/api/health"
    before_segments = live_segments(bench.index)
    before = [cpu_ms(p) for p in workers]
    started = time.monotonic()
    new_id, returned = bench.batch(size, watch=False)
    if new_id is None:
        return None
    seconds, polls = bench.wait_findable(new_id, returned)
    bench.freshness.append({"id": new_id, "seconds": seconds, "kind": "command", "phase": bench.phase})
    if seconds is None:
        bench.error(f"{new_id} was not served within {POLL_LIMIT:.0f} s of its batch")
    new_segments = live_segments(bench.index) - before_segments
    nudges = 0
    confirmed = True
    deadline = time.monotonic() + REOPEN_LIMIT
    while new_segments and not all(new_segments & opened_files(p) for p in workers):
        if time.monotonic() > deadline:
            confirmed = False
            break
        nudges += 1
        answer(health)
        time.sleep(POLL_SECONDS)
    time.sleep(SETTLE_SECONDS)
    deltas = [cpu_ms(p) - b for p, b in zip(workers, before, strict=True)]
    elapsed = time.monotonic() - started
    # The same requests without a commit (misses, one hit, health checks),
    # over the same time: a worker looks for commits several times a
    # second whether or not one comes, which is not the commit's cost.
    missing = f"{bench.base}/api/doc/no-such-document?related=0"
    found = f"{bench.base}/api/doc/{urllib.parse.quote(new_id)}?related=0"
    before = [cpu_ms(p) for p in workers]
    started = time.monotonic()
    for url in [missing] * (polls - 1) + [found] + [health] * nudges:
        answer(url)
        time.sleep(POLL_SECONDS)
    time.sleep(max(SETTLE_SECONDS, elapsed - (time.monotonic() - started)))
    baseline = sum(cpu_ms(p) - b for p, b in zip(workers, before, strict=True))
    return deltas, baseline, polls + nudges, confirmed


def measure_queries(index: Path, queries: list[str]) -> dict[str, Any]:
    """CPU of the queries on a fresh engine (each query once, so nothing
    comes from its cache), in this process, after the engine's own warm-up.
    CPU rather than wall time: the machine is shared."""
    from indexer.config import Settings
    from indexer.store import IndexStore
    from search.engine import SearchEngine, SearchRequest
    from search.query import QueryError

    engine = SearchEngine(Settings.load({"index": index}))
    engine.warm_up()
    engine.search(SearchRequest(q="预热", size=10))  # first-query imports and compiled patterns
    failed = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for i, q in enumerate(queries):
        try:
            engine.search(SearchRequest(q=q, size=10, facets=i % 10 == 0, strict=False))
        except QueryError:
            failed += 1
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    engine.close()
    return {
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        "segments": len(IndexStore(index).open()._segments()),
        "failed": failed,
    }


def query_cpu(bench: Bench, batches: int, size: int, queries: list[str], rounds: int = 2) -> dict[str, Any]:
    """The live index after (at least) ``batches`` incremental batches
    against a fresh rebuild of the same documents: the same queries on
    each, alternately, ``rounds`` times; the lowest CPU of each is kept
    (the machine is shared: the lowest is the least disturbed)."""
    for _ in range(batches - bench.crawl.since_rebuild):
        bench.batch(size)
    bench.join_watchers()  # their requests would be CPU of this process
    fresh = bench.work / "fresh-index"
    _summary, started, returned = bench.rebuild(into=fresh)
    measured: dict[str, list[dict]] = {"incremental": [], "rebuilt": []}
    for _ in range(max(1, rounds)):
        measured["incremental"].append(measure_queries(bench.index, queries))
        measured["rebuilt"].append(measure_queries(fresh, queries))
    shutil.rmtree(fresh, ignore_errors=True)
    best = {k: min(v, key=lambda m: m["cpu_seconds"]) for k, v in measured.items()}
    inc, reb = best["incremental"], best["rebuilt"]
    for name, m in best.items():
        if m["failed"]:
            bench.error(f"query_cpu: {m['failed']} queries failed on the {name} index")
    return {
        "queries": len(queries),
        "incremental_batches": bench.crawl.since_rebuild,
        "incremental_records": bench.crawl.docs_since_rebuild,
        "incremental_cpu_seconds": inc["cpu_seconds"],
        "rebuilt_cpu_seconds": reb["cpu_seconds"],
        "ratio": round(inc["cpu_seconds"] / reb["cpu_seconds"], 2) if reb["cpu_seconds"] else None,
        "incremental_segments": inc["segments"],
        "rebuilt_segments": reb["segments"],
        "rebuild_seconds": round(returned - started, 1),
        "rounds_cpu_seconds": {k: [m["cpu_seconds"] for m in v] for k, v in measured.items()},
    }


def correctness(bench: Bench) -> dict[str, Any]:
    """Every document of the final crawl served by id, batch articles in
    their latest version, every deleted one gone (8 requests at a time)."""
    crawl = bench.crawl

    def verify(item: tuple[str, int | None]) -> str | None:
        doc_id, version = item
        status, body = answer(f"{bench.base}/api/doc/{urllib.parse.quote(doc_id)}?related=0")
        if version is None:
            return None if status == 404 else "resurrected" if status == 200 else "error"
        if status != 200:
            return "lost" if status == 404 else "error"
        if version and f"版本{version}。" not in json.loads(body)["document"]["body"]:
            return "stale"
        return None

    items = [(d, 0) for d in crawl.originals] + list(crawl.versions.items()) + [(d, None) for d in crawl.deleted]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        outcomes = Counter(o for o in pool.map(verify, items) if o)
    return {
        "documents": len(crawl.originals) + len(crawl.versions),
        "deleted": len(crawl.deleted),
        "lost": outcomes["lost"],
        "stale": outcomes["stale"],
        "resurrected": outcomes["resurrected"],
        "errors": outcomes["error"],
        "seconds": round(time.monotonic() - started, 1),
    }


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def start_index(args: argparse.Namespace, index: Path) -> dict[str, Any]:
    """The index the run starts from: a copy of ``--index``, or built
    from the corpus (the build's time and dropped near-duplicates)."""
    if args.index:
        shutil.copytree(args.index, index)
        return {"copied": True}
    t0 = time.monotonic()
    built = search_json(index, "index", str(args.corpus))
    return {"build_seconds": round(time.monotonic() - t0, 1), "duplicates": len(built.get("duplicates") or [])}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every phase asked for, against one server over a copy of the index."""
    from indexer.config import Settings
    from indexer.writer import export_documents

    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))} (known: {', '.join(PHASES)})")
    for path in (args.corpus, args.queries, args.index):
        if path is not None and not path.exists():
            raise SystemExit(f"not found: {path}")
    figures: dict[str, Any] = {
        "corpus": args.corpus.name,
        "clients": args.clients,
        "workers": args.workers,
        "phases": phases,
    }
    started = time.monotonic()
    stages: dict[str, float] = {}

    def lap(name: str) -> None:
        """Wall seconds of each stage (where a slow run spent its time)."""
        stages[name] = round(time.monotonic() - started - sum(stages.values()), 1)

    poems = read_jsonl(args.corpus)
    dev = [q["query"] for q in read_jsonl(args.queries)] if args.queries else []
    words = title_words(poems)
    index = work / "index"
    figures["index"] = start_index(args, index)
    originals = {r["id"]: r for r in export_documents(Settings.load({"index": index}))}
    figures["index"]["documents"] = len(originals)
    bench = Bench(work, index, Crawl(originals, poems))
    server, bench.base = load.start_server(str(index), args.workers)
    try:
        master = server.pid
        for _ in range(args.workers * 2):  # every worker's searcher open
            answer(f"{bench.base}/api/search?" + urllib.parse.urlencode({"q": "预热"}))
        rss_at_start = {str(p): rss_mb(p) for p in worker_pids(master)}
        lap("setup")
        with WorkerWatch(master) as watch:
            if any(p in phases for p in LOAD_PHASES):
                figures.update(load_phases(bench, args, phases, dev, words))
                lap("load_phases")
            if "commit_cost" in phases or "rss" in phases:
                bench.phase = "commit_cost"
                cost, rss = commit_series(bench, master, args.commits, args.batch_size)
                if "commit_cost" in phases:
                    figures["commit_cost"] = cost
                if "rss" in phases:
                    figures["rss"] = {"at_start_mb": rss_at_start, **rss, "commits": args.commits}
                lap("commits")
            if "soak_mix" in phases:
                bench.phase = "soak_mix"
                figures["soak_mix"] = soak_mix(bench, args)
                lap("soak_mix")
            if "query_cpu" in phases:
                rng = random.Random(11)
                pairs = [" ".join(rng.sample(words, 2)) for _ in range(args.query_cpu_queries)]
                fixed = (dev + pairs)[: args.query_cpu_queries]
                bench.phase = "query_cpu"
                figures["query_cpu"] = query_cpu(
                    bench, args.query_cpu_batches, args.batch_size, fixed, args.query_cpu_rounds
                )
                lap("query_cpu")
            bench.join_watchers()
            figures["correctness"] = correctness(bench)
            lap("correctness")
        figures["workers_replaced"] = watch.replaced(args.workers)
        if figures["workers_replaced"]:
            bench.error(f"{figures['workers_replaced']} workers were replaced (a worker timeout?)")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    figures["freshness"] = freshness([f for f in bench.freshness if f["kind"] == "command"])
    figures["freshness"]["by_phase"] = {
        phase: freshness([f for f in bench.freshness if f["kind"] == "command" and f["phase"] == phase])
        for phase in dict.fromkeys(f["phase"] for f in bench.freshness if f["kind"] == "command")
    }
    watched = [f for f in bench.freshness if f["kind"] == "watched"]
    if watched:
        figures["freshness_watched"] = freshness(watched)
    figures["batches"] = {"count": bench.crawl.batches, **bench.summaries}
    figures["errors"] = len(bench.errors)
    figures["first_errors"] = bench.errors[:5]
    figures["stage_seconds"] = stages
    figures["seconds"] = round(time.monotonic() - started, 1)
    c = figures["correctness"]
    figures["ok"] = not (figures["errors"] or c["lost"] or c["stale"] or c["resurrected"] or c["errors"])
    return figures


def freshness(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and longest seconds until a batch's new article was served."""
    fresh = [f["seconds"] for f in measured if f["seconds"] is not None]
    return {
        "batches": len(measured),
        "median_seconds": round(statistics.median(fresh), 2) if fresh else None,
        "max_seconds": round(max(fresh), 2) if fresh else None,
        "not_served": len(measured) - len(fresh),
    }


def load_phases(bench: Bench, args: argparse.Namespace, phases: list[str], dev: list[str], words: list[str]) -> dict:
    """idle, during, after, rebuild and rapid under one continuous load of
    uncached searches; each phase is a window of its completions."""
    out: dict[str, Any] = {}
    with Clients(args.clients, UncachedQueries(bench.base, dev, words)) as clients:
        time.sleep(args.warmup)
        if "idle" in phases:
            bench.phase = "idle"
            t0 = time.monotonic()
            time.sleep(args.idle_seconds)
            out["idle"] = clients.window(t0, time.monotonic())
        if "during" in phases:
            bench.phase = "during"
            t0, t1, n = bench.batches_every(args.batch_size, args.batch_every, args.during_seconds)
            out["during"] = {**clients.window(t0, t1), "batches": n, "batch_size": args.batch_size}
        if "after" in phases:
            bench.phase = "after"
            t0 = time.monotonic()
            time.sleep(args.idle_seconds)
            out["after"] = clients.window(t0, time.monotonic())
        if "rebuild" in phases:
            bench.phase = "rebuild"
            summary, t0, returned = bench.rebuild()
            time.sleep(args.rebuild_tail)
            t1 = time.monotonic()
            out["rebuild"] = {
                **clients.window(t0, t1),
                **clients.silences(t0, t1),
                "rebuild_seconds": round(returned - t0, 1),
                "documents": summary.get("documents"),
            }
        if "rebuilt" in phases:
            bench.phase = "rebuilt"
            # The rebuilt index holds the after phase's documents, freshly
            # built; its tables are built in the background first.
            time.sleep(args.warmup)
            t0 = time.monotonic()
            time.sleep(args.idle_seconds)
            out["rebuilt"] = clients.window(t0, time.monotonic())
        if "rapid" in phases:
            bench.phase = "rapid"
            t0, t1, n = bench.batches_every(args.rapid_size, args.rapid_every, args.rapid_seconds)
            out["rapid"] = {**clients.window(t0, t1), "batches": n, "batch_size": args.rapid_size}
        if "rapid_watch" in phases:
            bench.phase = "rapid_watch"
            if "rapid" in phases:
                time.sleep(args.warmup)  # the last command's commit and merges settle
            w = bench.batches_watched(args.rapid_size, args.rapid_every, args.rapid_seconds, args.watch_poll)
            out["rapid_watch"] = {
                **clients.window(w["start"], w["end"]),
                "batches": w["batches"],
                "batch_size": args.rapid_size,
                "watcher_runs": w["runs"],
                "most_files_in_a_run": w["files_per_run_max"],
            }
    bench.errors.extend(clients.errors)
    idle = out.get("idle", {})
    out["ratios"] = {
        "during_over_idle_qps": _ratio(out.get("during", {}).get("queries_per_second"), idle.get("queries_per_second")),
        "after_over_idle_qps": _ratio(out.get("after", {}).get("queries_per_second"), idle.get("queries_per_second")),
        "during_over_idle_p95": _ratio(out.get("during", {}).get("p95_ms"), idle.get("p95_ms")),
        "after_over_rebuilt_qps": _ratio(
            out.get("after", {}).get("queries_per_second"), out.get("rebuilt", {}).get("queries_per_second")
        ),
        "rapid_over_idle_qps": _ratio(out.get("rapid", {}).get("queries_per_second"), idle.get("queries_per_second")),
        "rapid_watch_over_idle_qps": _ratio(
            out.get("rapid_watch", {}).get("queries_per_second"), idle.get("queries_per_second")
        ),
    }
    return out


def soak_mix(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """soak.py's own mix (a few topics searched again and again, documents
    by id: mostly cached) without batches and then with them."""
    stable = sorted(bench.crawl.originals)[:: max(1, len(bench.crawl.originals) // 500)]
    with Clients(args.clients, lambda r: soak.client_url(bench.base, r, stable), seed=2) as clients:
        time.sleep(args.warmup)
        t0 = time.monotonic()
        time.sleep(args.soak_seconds)
        without = clients.window(t0, time.monotonic())
        t0, t1, n = bench.batches_every(args.batch_size, args.batch_every, args.soak_seconds)
        t1 = max(t1, t0 + args.soak_seconds)
        time.sleep(max(0.0, t1 - time.monotonic()))
        with_batches = {**clients.window(t0, t1), "batches": n}
    bench.errors.extend(clients.errors)
    return {
        "without_batches": without,
        "with_batches": with_batches,
        "ratio_qps": _ratio(with_batches["queries_per_second"], without["queries_per_second"]),
    }


def summary_lines(figures: dict[str, Any]) -> Iterator[str]:
    """The figures for a person: one line per phase."""

    def load_line(name: str, f: dict) -> str:
        extra = f" batches {f['batches']}" if "batches" in f else ""
        return (
            f"{name:<12} {f['requests']:>6} requests {f['errors']:>3} errors {f['queries_per_second']:>7} q/s "
            f"p50 {f['p50_ms']} p95 {f['p95_ms']} p99 {f['p99_ms']} ms{extra}"
        )

    yield f"{figures['corpus']}: clients {figures['clients']}, workers {figures['workers']}, index {figures['index']}"
    for name in LOAD_PHASES:
        if name in figures:
            yield load_line(name, figures[name])
        if name == "rebuild" and name in figures:
            r = figures["rebuild"]
            yield (
                f"{'':<12} the rebuild took {r['rebuild_seconds']} s; longest silence {r['longest_gap_seconds']} s, "
                f"{r['zero_windows']} of {r['windows']} 1-s windows with nothing completed"
            )
    if "ratios" in figures:
        yield "ratios       " + ", ".join(f"{k} {v}" for k, v in figures["ratios"].items())
    for name in (
        "commit_cost",
        "rss",
        "query_cpu",
        "soak_mix",
        "correctness",
        "freshness",
        "freshness_watched",
        "batches",
    ):
        if name in figures:
            yield f"{name:<12} " + json.dumps(figures[name], ensure_ascii=False)
    yield f"errors       {figures['errors']} {figures['first_errors']}"
    yield f"seconds      {figures['seconds']}  ok {figures['ok']}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="JSON Lines articles (the initial crawl)")
    ap.add_argument("--queries", type=Path, default=DEFAULT_QUERIES, help="JSON Lines with a 'query' field")
    ap.add_argument("--index", type=Path, help="start from a copy of this index (built from --corpus) to save time")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=5, help="seconds of load before a phase counts")
    ap.add_argument("--idle-seconds", type=float, default=30, help="the idle phase, and the after phase")
    ap.add_argument("--during-seconds", type=float, default=120)
    ap.add_argument("--batch-every", type=float, default=20)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--rebuild-tail", type=float, default=5, help="seconds after the rebuild in its window")
    ap.add_argument("--rapid-seconds", type=float, default=60)
    ap.add_argument("--rapid-every", type=float, default=2)
    ap.add_argument("--rapid-size", type=int, default=50)
    ap.add_argument("--watch-poll", type=float, default=0.5, help="rapid_watch: the watcher's --poll")
    ap.add_argument("--commits", type=int, default=20, help="batches for commit_cost and rss")
    ap.add_argument("--query-cpu-batches", type=int, default=30, help="incremental batches before query_cpu")
    ap.add_argument("--query-cpu-queries", type=int, default=300, help="queries measured on each index")
    ap.add_argument("--query-cpu-rounds", type=int, default=2, help="times each index is measured (lowest kept)")
    ap.add_argument("--soak-seconds", type=float, default=30, help="each half of soak_mix")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zhsearch-serving-") as tmp:
        figures = run(args, Path(tmp))
    print(json.dumps(figures, ensure_ascii=False) if args.json else "\n".join(summary_lines(figures)))
    return figures


if __name__ == "__main__":
    # Stopped from outside: unwind, so that the server and the temporary
    # folder go too.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    sys.exit(0 if main()["ok"] else 1)
