"""Relevance evaluation against judged query sets (TREC qrels).

The metrics follow the corpus README: rank the whole collection, keep the
top 100, count relevance >= 1 as relevant, leave judged ids that are not in
the collection out (also from recall's denominator), and score a query with
no result as 0.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.engine import SearchEngine, SearchRequest
from search.query import QueryError

#: How deep each query is ranked.
DEPTH = 100


class EvalInputError(ValueError):
    """A queries or qrels file that cannot be read."""


@dataclass(frozen=True)
class JudgedQuery:
    qid: str
    query: str


def load_queries(path: str | Path) -> list[JudgedQuery]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                out.append(JudgedQuery(str(data["qid"]), str(data["query"])))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise EvalInputError(f"{path}:{lineno}: not a query line ({err})") from None
    return out


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels (``qid 0 docid rel``) or the JSON Lines form
    (``{"qid", "relevant": {docid: rel}}``)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                if line.startswith("{"):
                    data = json.loads(line)
                    qrels.setdefault(str(data["qid"]), {}).update({str(k): int(v) for k, v in data["relevant"].items()})
                else:
                    qid, _zero, docid, rel = line.split(None, 3)
                    qrels.setdefault(qid, {})[docid] = int(rel)
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
                raise EvalInputError(f"{path}:{lineno}: not a qrels line ({err})") from None
    return qrels


def sample_queries(queries: Sequence[JudgedQuery], n: int | None, seed: int) -> list[JudgedQuery]:
    if not n or n >= len(queries):
        return list(queries)
    return random.Random(seed).sample(list(queries), n)


def _dcg(gains: Iterable[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def score_ranking(ranked: Sequence[str], relevant: dict[str, int]) -> dict[str, float]:
    """MRR@10, Recall@10, Recall@100 and nDCG@10 of one ranking."""
    rel = {d: r for d, r in relevant.items() if r >= 1}
    if not rel:
        return {"mrr@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "ndcg@10": 0.0}
    mrr = 0.0
    for i, doc in enumerate(ranked[:10]):
        if doc in rel:
            mrr = 1.0 / (i + 1)
            break
    recall10 = len(set(ranked[:10]) & rel.keys()) / len(rel)
    recall100 = len(set(ranked[:DEPTH]) & rel.keys()) / len(rel)
    dcg = _dcg(rel.get(d, 0) for d in ranked[:10])
    idcg = _dcg(sorted(rel.values(), reverse=True)[:10])
    return {"mrr@10": mrr, "recall@10": recall10, "recall@100": recall100, "ndcg@10": dcg / idcg}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank, so a reported p95 is a latency that was measured; the
    evaluation and the benchmark quote the same one."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[k]


def evaluate(
    engine: SearchEngine,
    queries: Sequence[JudgedQuery],
    qrels: dict[str, dict[str, int]],
    collection_ids: set[str],
) -> dict[str, Any]:
    """Run every query against ``engine`` and average the metrics."""
    totals = {"mrr@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "ndcg@10": 0.0}
    latencies: list[float] = []
    failed = 0
    for q in queries:
        judged = {d: r for d, r in qrels.get(q.qid, {}).items() if d in collection_ids}
        started = time.perf_counter()
        try:
            result = engine.search(SearchRequest(q=q.query, size=DEPTH, snippets=False))
            ranked = [h.id for h in result.hits]
        except QueryError:
            ranked = []
            failed += 1
        latencies.append((time.perf_counter() - started) * 1000)
        for key, value in score_ranking(ranked, judged).items():
            totals[key] += value
    n = len(queries) or 1
    out: dict[str, Any] = {"queries": len(queries)}
    out.update({k: round(v / n, 4) for k, v in totals.items()})
    out["query_ms_p50"] = round(statistics.median(latencies), 2) if latencies else 0.0
    out["query_ms_p95"] = round(percentile(latencies, 95), 2)
    out["failed_queries"] = failed
    return out
