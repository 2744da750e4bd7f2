"""`search bench`: our pipeline and an SQLite FTS5 reference, side by side.

Both build an index from scratch over the same corpus and answer the same
queries in the same run. The reference is built the way the usual recipe
builds it: the standard ``jieba`` package's ``cut_for_search`` tokens joined
by spaces in an FTS5 table (``unicode61`` tokenizer), ranked by ``bm25()``,
all words first and any word when that finds nothing, snippets by
``snippet()``. Each build runs in a child process so that its peak memory is
its own.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.config import Settings
from indexer.store import IndexStore
from indexer.writer import index_paths
from search.engine import SearchEngine, SearchRequest
from search.evaluate import load_queries, percentile
from search.query import QueryError


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3) if values else 0.0,
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
    }


def _peak_rss_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def _child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``target`` in a forked child; its result plus its peak memory
    (the child's own and that of any workers it started)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run() -> None:
        try:
            result = target(*args)
            result["peak_memory_mb"] = max(_peak_rss_mb(resource.RUSAGE_SELF), _peak_rss_mb(resource.RUSAGE_CHILDREN))
            child.send(("ok", result))
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            child.send(("error", f"{type(err).__name__}: {err}"))

    proc = ctx.Process(target=run)
    proc.start()
    status, payload = parent.recv()
    proc.join()
    if status != "ok":
        raise RuntimeError(payload)
    return payload


def _built_and_queried(built: dict[str, Any], query: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A build's figures with those of ``query(*args)``, run in a child of
    its own. Both children report a peak: ``peak_memory_mb`` stays the
    build's (the figure the memory ratio compares), and the querying
    process's is kept apart as ``query_peak_memory_mb``."""
    queried = _child(query, *args)
    queried["query_peak_memory_mb"] = queried.pop("peak_memory_mb")
    return {**built, **queried}


# --------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------


def _build_ours(settings: Settings, corpus: str) -> dict[str, Any]:
    started = time.perf_counter()
    summary = index_paths(settings, [corpus])
    return {"documents": summary.documents, "build_seconds": round(time.perf_counter() - started, 2)}


def _query_ours(settings: Settings, queries: list[str], size: int, questions: list[str]) -> dict[str, Any]:
    engine = SearchEngine(settings)
    engine.warm_up()
    out: dict[str, Any] = {}
    for key, asked, snippets in (
        ("query_ms", queries, False),
        ("query_ms_snippets", queries, True),
        ("question_ms", questions, False),
    ):
        if not asked:
            continue
        times = []
        for q in asked:
            started = time.perf_counter()
            try:
                engine.search(SearchRequest(q=q, size=size, snippets=snippets))
            except QueryError:
                pass
            times.append((time.perf_counter() - started) * 1000)
        out[key] = _latency(times)
    return out


# --------------------------------------------------------------------------
# The FTS5 reference
# --------------------------------------------------------------------------


def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _segment(jieba, text: str | None) -> str:
    return " ".join(w for w in jieba.cut_for_search(text or "") if w.strip())


def _build_fts5(db_path: str, corpus: str) -> dict[str, Any]:
    jieba = _jieba()
    started = time.perf_counter()
    db = sqlite3.connect(db_path)
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, body, tokenize='unicode61')")
    count = 0
    with open(corpus, encoding="utf-8") as fh:
        batch = []
        for line in fh:
            if not line.strip():
                continue
            doc = json.loads(line)
            batch.append((doc.get("id"), _segment(jieba, doc.get("title")), _segment(jieba, doc.get("body"))))
            if len(batch) >= 1000:
                db.executemany("INSERT INTO docs VALUES (?, ?, ?)", batch)
                count += len(batch)
                batch = []
        db.executemany("INSERT INTO docs VALUES (?, ?, ?)", batch)
        count += len(batch)
    db.commit()
    db.close()
    return {"documents": count, "build_seconds": round(time.perf_counter() - started, 2)}


def _fts5_match(jieba, q: str, op: str) -> str:
    words = [w.replace('"', '""') for w in jieba.cut_for_search(q) if w.strip() and any(c.isalnum() for c in w)]
    return f" {op} ".join(f'"{w}"' for w in words)


def _query_fts5(db_path: str, queries: list[str], size: int, questions: list[str]) -> dict[str, Any]:
    jieba = _jieba()
    db = sqlite3.connect(db_path)
    plain = "SELECT id FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?"
    with_snippets = (
        "SELECT id, snippet(docs, 1, '<mark>', '</mark>', '…', 16), snippet(docs, 2, '<mark>', '</mark>', '…', 32) "
        "FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?"
    )
    out: dict[str, Any] = {}
    for key, asked, sql in (
        ("query_ms", queries, plain),
        ("query_ms_snippets", queries, with_snippets),
        ("question_ms", questions, plain),
    ):
        if not asked:
            continue
        times = []
        for q in asked:
            started = time.perf_counter()
            for op in ("AND", "OR"):  # all words, then any word
                match = _fts5_match(jieba, q, op)
                if not match:
                    break
                try:
                    rows = db.execute(sql, (match, size)).fetchall()
                except sqlite3.OperationalError:
                    rows = []
                if rows:
                    break
            times.append((time.perf_counter() - started) * 1000)
        out[key] = _latency(times)
    db.close()
    return out


# --------------------------------------------------------------------------


def run_bench(
    corpus: str,
    queries_path: str,
    work: Path,
    settings: Settings,
    size: int = 10,
    questions: list[str] | None = None,
) -> dict[str, Any]:
    """Build and query both pipelines; the figures and their ratios.
    ``questions``: long natural-language questions, timed apart from the
    queries (they match most of an index, and are slow where short
    queries are not)."""
    queries = [q.query for q in load_queries(queries_path)]
    questions = questions or []
    input_mb = os.path.getsize(corpus) / 1_048_576
    ours_settings = settings.replace(index=work / "ours")
    shutil.rmtree(ours_settings.index, ignore_errors=True)
    ours = _built_and_queried(
        _child(_build_ours, ours_settings, corpus), _query_ours, ours_settings, queries, size, questions
    )
    ours["index_mb"] = round(IndexStore(ours_settings.index).size_bytes() / 1_048_576, 1)
    db_path = str(work / "fts5.db")
    if os.path.exists(db_path):
        os.remove(db_path)
    fts5 = _built_and_queried(_child(_build_fts5, db_path, corpus), _query_fts5, db_path, queries, size, questions)
    fts5["index_mb"] = round(os.path.getsize(db_path) / 1_048_576, 1)
    for figures in (ours, fts5):
        figures["input_mb"] = round(input_mb, 2)
        figures["mb_per_second"] = round(input_mb / figures["build_seconds"], 3)
    ratios = {
        "build_speed": round(ours["mb_per_second"] / fts5["mb_per_second"], 3),
        "query_p95": round(ours["query_ms"]["p95"] / max(fts5["query_ms"]["p95"], 1e-6), 3),
        "query_p95_snippets": round(ours["query_ms_snippets"]["p95"] / max(fts5["query_ms_snippets"]["p95"], 1e-6), 3),
        # Lower is better for these: ours over the reference's.
        "index_size": round(ours["index_mb"] / max(fts5["index_mb"], 0.1), 3),
        "peak_memory": round(ours["peak_memory_mb"] / max(fts5["peak_memory_mb"], 1e-6), 3),
        "query_peak_memory": round(ours["query_peak_memory_mb"] / max(fts5["query_peak_memory_mb"], 1e-6), 3),
    }
    if questions:
        ratios["question_p95"] = round(ours["question_ms"]["p95"] / max(fts5["question_ms"]["p95"], 1e-6), 3)
    return {
        "corpus": os.path.basename(corpus),
        "queries": len(queries),
        "questions": len(questions),
        "ours": ours,
        "fts5": fts5,
        "ratios": ratios,
    }
