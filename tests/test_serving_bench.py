"""A short run of benchmarks/serving.py: every phase, on the first poetry
records of the shared corpora, with tiny durations and batches (the
realistic run is manual: it takes about a quarter of an hour)."""

from __future__ import annotations

import importlib.util
import sys
from itertools import islice
from pathlib import Path

from conftest import ROOT, shared_corpus

#: Records of poetry-20k the run starts from (indexing, a rebuild and the
#: final check of every document scale with it).
RECORDS = 800


def _serving_module():
    path = ROOT / "benchmarks" / "serving.py"
    spec = importlib.util.spec_from_file_location("serving", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("serving", module)
    spec.loader.exec_module(module)
    return module


def test_every_phase_serves_and_loses_nothing(tmp_path: Path) -> None:
    poetry = shared_corpus("poetry-20k.jsonl")
    queries = shared_corpus("queries/knownitem_poetry.queries.jsonl")
    corpus = tmp_path / "poetry.jsonl"
    with open(poetry, encoding="utf-8") as src:
        corpus.write_text("".join(islice(src, RECORDS)), encoding="utf-8")
    serving = _serving_module()
    figures = serving.main(
        [
            *("--corpus", str(corpus), "--queries", str(queries), "--clients", "4"),
            *("--warmup", "0.5", "--idle-seconds", "1", "--during-seconds", "1", "--batch-every", "1"),
            *("--batch-size", "20", "--rebuild-tail", "1", "--rapid-seconds", "0.5", "--rapid-every", "0.5"),
            *("--rapid-size", "5", "--commits", "1", "--query-cpu-batches", "3", "--query-cpu-queries", "40"),
            *("--query-cpu-rounds", "1", "--soak-seconds", "1", "--watch-poll", "0.2", "--json"),
        ]
    )
    assert figures["ok"] and figures["errors"] == 0, figures["first_errors"]
    for phase in ("idle", "during", "after", "rebuild", "rebuilt", "rapid", "rapid_watch"):
        f = figures[phase]
        assert f["requests"] > 0 and f["errors"] == 0 and f["queries_per_second"] > 0, (phase, f)
        assert 0 < f["p50_ms"] <= f["p95_ms"] <= f["p99_ms"], (phase, f)
    assert figures["during"]["batches"] >= 1 and figures["rapid"]["batches"] >= 1, figures
    watched = figures["rapid_watch"]
    assert watched["batches"] >= 1 and 1 <= watched["watcher_runs"] <= watched["batches"], watched
    rebuild = figures["rebuild"]
    assert rebuild["documents"] >= RECORDS and rebuild["rebuild_seconds"] > 0, rebuild
    assert 0 <= rebuild["zero_windows"] <= rebuild["windows"] and rebuild["longest_gap_seconds"] > 0, rebuild
    assert all(v is not None and v > 0 for v in figures["ratios"].values()), figures["ratios"]
    cost = figures["commit_cost"]
    assert cost["workers"] == 2 and cost["commits"] == 1 and cost["reopen_unconfirmed"] == 0, cost
    assert cost["max_ms_per_worker_per_commit"] >= cost["median_ms_per_worker_per_commit"] >= 0, cost
    rss = figures["rss"]
    assert len(rss["after_commits_mb"]) == 2 and all(mb > 20 for mb in rss["after_commits_mb"].values()), rss
    cpu = figures["query_cpu"]
    assert cpu["incremental_batches"] >= 3 and cpu["incremental_cpu_seconds"] > 0 and cpu["ratio"] > 0, cpu
    assert cpu["incremental_segments"] >= 1 and cpu["rebuilt_segments"] >= 1, cpu
    mix = figures["soak_mix"]
    assert mix["without_batches"]["requests"] > 0 and mix["with_batches"]["batches"] >= 1, mix
    assert mix["ratio_qps"] > 0, mix
    c = figures["correctness"]
    assert c["documents"] > RECORDS and c["deleted"] > 0, c
    assert (c["lost"], c["stale"], c["resurrected"], c["errors"]) == (0, 0, 0, 0), c
    fresh, watched = figures["freshness"], figures["freshness_watched"]
    assert fresh["batches"] + watched["batches"] == figures["batches"]["count"], (fresh, watched)
    assert fresh["not_served"] == 0 and watched["not_served"] == 0, (fresh, watched)
    assert watched["batches"] == figures["rapid_watch"]["batches"], watched
    assert {"during", "rapid", "commit_cost"} <= set(fresh["by_phase"]), fresh
    assert fresh["max_seconds"] is not None and fresh["max_seconds"] >= fresh["median_seconds"] >= 0, fresh
    batches = figures["batches"]
    assert batches["duplicates"] == 0 and not batches.get("mismatched") and not batches.get("failed"), batches
