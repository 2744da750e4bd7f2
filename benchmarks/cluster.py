"""A sharded index on Ray: build time and memory, and query latency and
throughput, for several shard and replica counts, beside the single index.

Builds (each ``search index --rebuild --shards N`` in a process of its own,
on an embedded Ray of this machine): wall time, and the peak resident
memory of every process that took part (the command, and Ray's workers
that ran its shard tasks), sampled from /proc every 0.2 s.

Queries: a local Ray cluster on 127.0.0.1; for each shard count and
replica count, a coordinator in this process (``ShardedEngine``) serves
``--clients`` closed-loop client threads for ``--seconds`` (after an
uncounted warm-up), each sending the queries of ``--queries`` in a
rotating order, with snippets; the same clients are first run against the
single index in this process (``SearchEngine``), whose answers the shards
must give: as it runs (repeated queries answered from its cache) and with
its cache off, as the sharded engine runs. Prints JSON with ``--json``.

    python benchmarks/cluster.py --corpus scale.jsonl --queries ../shared/corpora/queries/knownitem_poetry.queries.jsonl \\
        --shards 1,2,4 --replicas 1,2 --clients 8 [--work DIR] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.cluster import import_ray  # noqa: E402
from indexer.config import Settings  # noqa: E402
from search import engine as engine_module  # noqa: E402
from search.engine import SearchEngine, SearchRequest  # noqa: E402
from search.shards import ShardedEngine  # noqa: E402


def _peak_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(_children(p))
    return found


def timed_build(corpus: Path, index: Path, shards: int | None, env: dict[str, str]) -> dict[str, Any]:
    """``search index --rebuild [--shards N] corpus``: wall time, and the
    peak memory of each process of its tree (Ray's workers included)."""
    cmd = [sys.executable, "-m", "cli", "--index", str(index), "index", "--rebuild", "--json", str(corpus)]
    if shards is not None:
        cmd[-2:-1] = ["--json", "--shards", str(shards)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[int, str]] = {}
    while proc.poll() is None:
        for pid in _tree(proc.pid):
            kb = _peak_kb(pid)
            if kb is not None and kb > peaks.get(pid, (0, ""))[0]:
                peaks[pid] = (kb, _cmdline(pid)[:80])
        time.sleep(0.2)
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}): {err[-2000:]}")
    summary = json.loads(out)
    roles: dict[str, float] = {}
    for kb, line in peaks.values():
        role = (
            "command"
            if " -m cli " in line
            else ("shard task" if "ray::" in line or "default_worker" in line else "ray")
        )
        roles[role] = max(roles.get(role, 0.0), round(kb / 1024, 1))
    return {
        "shards": shards,
        "seconds": round(seconds, 1),
        "documents": summary.get("documents"),
        "peak_mb_largest_process": max(roles.values(), default=None),
        "peak_mb_by_role": roles,
    }


def load(engine: Any, queries: list[str], clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Closed-loop clients for ``seconds`` after ``warmup``: latency
    percentiles and queries per second."""
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()
    counting_from = start + warmup
    until = counting_from + seconds
    lock = threading.Lock()

    def client(offset: int) -> None:
        n = offset
        while True:
            t0 = time.perf_counter()
            if t0 >= until:
                return
            try:
                engine.search(SearchRequest(q=queries[n % len(queries)]))
            except Exception:  # noqa: BLE001 - counted
                errors[0] += 1
            t1 = time.perf_counter()
            if t0 >= counting_from:
                with lock:
                    latencies.append((t1 - t0) * 1000)
            n += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else None

    return {
        "queries": len(latencies),
        "errors": errors[0],
        "queries_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
    }


def _same_answers(ours: Any, theirs: Any) -> bool:
    """The same scores (to 1e-6) in the same order, and the same hits above
    the page's last score. The single index here was built in parallel, so
    its documents are numbered in another order than the shards keep, and
    equal scores are ordered differently: where they straddle the end of
    the page, each may show another of them."""
    a, b = ours.hits, theirs.hits
    if len(a) != len(b) or any(abs(x.score - y.score) > 1e-6 for x, y in zip(a, b, strict=True)):
        return False
    if not a:
        return True
    last = a[-1].score + 1e-6
    return {h.id for h in a if h.score > last} == {h.id for h in b if h.score > last}


@contextlib.contextmanager
def _answers_not_cached() -> Iterator[None]:
    cache_size, engine_module.CACHE_SIZE = engine_module.CACHE_SIZE, 0
    try:
        yield
    finally:
        engine_module.CACHE_SIZE = cache_size


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--queries", type=Path, required=True)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--work", type=Path, help="keep the indexes here (and reuse those already built)")
    ap.add_argument("--skip-builds", action="store_true", help="only the queries, on the indexes in --work")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    shard_counts = [int(x) for x in args.shards.split(",")]
    replica_counts = [int(x) for x in args.replicas.split(",")]
    queries = [json.loads(line)["query"] for line in args.queries.read_text(encoding="utf-8").splitlines() if line]
    with tempfile.TemporaryDirectory(prefix="zhsearch-cluster-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        env.pop("ZHSEARCH_RAY_ADDRESS", None)
        figures: dict[str, Any] = {"corpus": str(args.corpus), "builds": [], "queries": []}
        if not args.skip_builds:
            figures["builds"].append({**timed_build(args.corpus, work / "single", None, env), "shards": "single index"})
            for n in shard_counts:
                figures["builds"].append(timed_build(args.corpus, work / f"shards-{n}", n, env))
                print(json.dumps(figures["builds"][-1]), file=sys.stderr)
        single = SearchEngine(Settings(index=work / "single"))
        figures["queries"].append(
            {"engine": "single index, in process", **load(single, queries, args.clients, args.seconds, args.warmup)}
        )
        print(json.dumps(figures["queries"][-1]), file=sys.stderr)
        # Both engines cache answers (per commit, per generation), and the
        # clients repeat the query set: the row above is mostly cache
        # lookups. The sharded rows are measured without the cache, to
        # show what a query costs across shards, beside this one.
        with _answers_not_cached():
            uncached = SearchEngine(Settings(index=work / "single"))
            row = load(uncached, queries, args.clients, args.seconds, args.warmup)
        figures["queries"].append({"engine": "single index, in process, answers not cached", **row})
        print(json.dumps(figures["queries"][-1]), file=sys.stderr)
        ray = import_ray()
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        try:
            with _answers_not_cached():
                address = ray.get_runtime_context().gcs_address
                for n in shard_counts:
                    for r in replica_counts:
                        settings = Settings(index=work / f"shards-{n}", ray_address=address)
                        engine = ShardedEngine(settings, replicas=r)
                        engine.warm_up()
                        same = all(
                            _same_answers(engine.search(SearchRequest(q=q)), single.search(SearchRequest(q=q)))
                            for q in queries[:20]
                        )
                        row = {"shards": n, "replicas": r, "same_answers_first_20": same}
                        row.update(load(engine, queries, args.clients, args.seconds, args.warmup))
                        figures["queries"].append(row)
                        print(json.dumps(row), file=sys.stderr)
                        engine.close()
        finally:
            ray.shutdown()
    print(json.dumps(figures, ensure_ascii=False, indent=None if args.json else 1))
    return figures


if __name__ == "__main__":
    main()
