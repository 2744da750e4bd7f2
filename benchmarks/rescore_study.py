"""How far a linear re-ranking of the first results could lift a known-item set.

Tuning the weights (benchmarks/tune.py) moves one parameter at a time inside
the ranking itself. This study asks a wider question: given the first
``--depth`` results of each query, is there any linear combination of the
usual ranking signals that puts more targets first? If even a combination
fitted to the judged queries themselves gains little, the misses that remain
are ties the judgments broke one way, not a signal the engine is missing.

For every query and result it records:

* the engine's score, and what each part contributes: the score of the
  title, lead, body and tags alone, and the loss when the proximity bonus,
  the phrase bonus or the gram fields are switched off;
* the document: body and title length, the CJK share of the body, whether it
  has tags, how early the body holds all the query's words, whether the title
  holds the query as one string or is exactly the query.

Score features are divided by the query's best score. Then the first score
plus a weighted sum of the features is searched for the highest MRR@10:
coordinate ascent from zero, then random combinations, all fitted on the
same queries (in-sample: an upper bound, not a figure a ranker would reach).
``--folds`` adds a k-fold cross-validated figure. Last, for each query whose
target is not first, it lists the features on which the target beats every
document ranked above it.

    python -m benchmarks.rescore_study --work /tmp/zhsearch-tune \\
        --set html:../shared/corpora/articles-html.jsonl:knownitem_html:mrr@10 \\
        --set poetry:../shared/corpora/poetry-20k.jsonl:knownitem_poetry:mrr@10

The first set is studied; the others are checked for losses at each step
(the objective adds half their MRR@10).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.tune import load_set
from indexer.analysis import is_cjk, normalize
from indexer.config import Settings
from search.engine import SearchEngine, SearchRequest
from search.evaluate import score_ranking
from search.query import DEFAULT_WEIGHTS, content_words, parse_query

#: Weights that leave one part of the score: (name, overrides, as a loss).
#: A loss feature is the score minus the score without that part.
_FIELDS_OFF = {"title": 0.0, "lead": 0.0, "body": 0.0, "tags": 0.0, "author": 0.0, "near": 0.0, "proximity": 0.0}
PARTS: list[tuple[str, dict[str, float], bool]] = [
    ("near", {"near": 0.0}, True),
    ("phrase", {"proximity": 0.0}, True),
    ("gram", {"gram": 0.0}, True),
    *(
        (name, {**_FIELDS_OFF, name: getattr(DEFAULT_WEIGHTS, name)}, False)
        for name in ("title", "lead", "body", "tags")
    ),
]
DOC_FEATURES = ["log_body_len", "log_title_len", "cjk_share", "has_tags", "early", "title_holds", "title_is"]
FEATURES = [name for name, _over, _loss in PARTS] + DOC_FEATURES
#: How deep the part scores are looked up (a result outside scores 0).
PART_DEPTH = 3000
_NOT_WORD_RE = re.compile(r"[\W_]+")


@dataclass
class Row:
    doc_id: str
    #: The engine's score and each part's, as ranked (not divided).
    score: float
    parts: dict[str, float]
    doc: list[float]

    def features(self, top: float) -> list[float]:
        scaled = [
            (self.score - self.parts[name]) / top if loss else self.parts[name] / top for name, _over, loss in PARTS
        ]
        return scaled + self.doc


@dataclass
class Query:
    qid: str
    relevant: dict[str, int]
    #: The first score, divided by the query's best, and the features.
    ranked: list[tuple[str, float, list[float]]]


def _squash(text: str) -> str:
    return _NOT_WORD_RE.sub("", normalize(text).lower())


def doc_features(words: Sequence[str], title: str, body: str, tags: Sequence[str]) -> list[float]:
    """What a document offers whatever the scores (see the module text)."""
    text = normalize(body)
    offsets = [text.find(normalize(w)) for w in words]
    cover = max(offsets) if offsets and min(offsets) >= 0 else None
    chars = [c for c in body if not c.isspace()]
    key = "".join(_squash(w) for w in words)
    return [
        math.log1p(len(body)) / 8,
        math.log1p(len(title)) / 4,
        sum(map(is_cjk, chars)) / max(1, len(chars)),
        float(bool(tags)),
        0.0 if cover is None else 1 / (1 + cover / 50),
        float(bool(key) and key in _squash(title)),
        float(bool(key) and key == _squash(title)),
    ]


def collect(index: Path, queries, qrels, ids: set[str], depth: int) -> list[Query]:
    """Each query's first ``depth`` results with their features."""
    settings = Settings(index=index, max_page_size=PART_DEPTH)
    engine = SearchEngine(settings)
    rows: list[list[Row]] = []
    for q in queries:
        hits = engine.search(SearchRequest(q=q.query, size=depth, snippets=False)).hits
        words = content_words(parse_query(q.query), engine.segmentation)
        searcher = engine.searcher()
        rows.append(
            [Row(h.id, h.score, {}, doc_features(words, h.title or "", _body(searcher, h.id), h.tags)) for h in hits]
        )
    engine.close()
    for name, over, _loss in PARTS:
        part = SearchEngine(settings, weights=dataclasses.replace(DEFAULT_WEIGHTS, **over))
        for q, found in zip(queries, rows, strict=True):
            scores = {
                h.id: h.score for h in part.search(SearchRequest(q=q.query, size=PART_DEPTH, snippets=False)).hits
            }
            for row in found:
                row.parts[name] = scores.get(row.doc_id, 0.0)
        part.close()
    out = []
    for q, found in zip(queries, rows, strict=True):
        top = found[0].score if found and found[0].score > 0 else 1.0
        judged = {d: r for d, r in qrels.get(q.qid, {}).items() if d in ids}
        out.append(Query(q.qid, judged, [(r.doc_id, r.score / top, r.features(top)) for r in found]))
    return out


def _body(searcher, doc_id: str) -> str:
    stored = searcher.document(id=doc_id)
    return (stored or {}).get("body") or ""


def reranked(query: Query, weights: Sequence[float]) -> list[str]:
    scored = [
        (score + sum(w * f for w, f in zip(weights, feats, strict=True)), -i, doc_id)
        for i, (doc_id, score, feats) in enumerate(query.ranked)
    ]
    return [doc_id for _s, _i, doc_id in sorted(scored, reverse=True)]


def mrr(queries: Sequence[Query], weights: Sequence[float]) -> float:
    if not queries:
        return 0.0
    return sum(score_ranking(reranked(q, weights), q.relevant)["mrr@10"] for q in queries) / len(queries)


def fit(
    studied: Sequence[Query], checked: Sequence[Sequence[Query]], samples: int, seed: int
) -> tuple[list[float], float]:
    """Coordinate ascent, then random combinations; in-sample."""

    def objective(weights: Sequence[float]) -> float:
        return mrr(studied, weights) + 0.5 * sum(mrr(c, weights) for c in checked)

    best = [0.0] * len(FEATURES)
    best_value = objective(best)
    for _round in range(3):
        for i in range(len(best)):
            for step in (-0.4, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.4):
                candidate = list(best)
                candidate[i] += step
                value = objective(candidate)
                if value > best_value + 1e-9:
                    best, best_value = candidate, value
    rng = random.Random(seed)
    for _ in range(samples):
        candidate = [rng.uniform(-1, 1) if rng.random() < 0.25 else 0.0 for _ in FEATURES]
        value = objective(candidate)
        if value > best_value + 1e-9:
            best, best_value = candidate, value
    return best, best_value


def cross_validated(
    studied: Sequence[Query], checked: Sequence[Sequence[Query]], folds: int, samples: int, seed: int
) -> float:
    order = list(range(len(studied)))
    random.Random(seed).shuffle(order)
    total = 0.0
    for k in range(folds):
        held = set(order[k::folds])
        weights, _value = fit([q for i, q in enumerate(studied) if i not in held], checked, samples, seed)
        total += mrr([studied[i] for i in held], weights) * len(held)
    return total / len(studied)


def favouring(query: Query) -> list[str] | None:
    """Features on which the first relevant result beats every result above
    it; None when it is already first (or not found)."""
    rank = next((i for i, (doc_id, _s, _f) in enumerate(query.ranked) if query.relevant.get(doc_id, 0) >= 1), None)
    if not rank:
        return None
    target = query.ranked[rank][2]
    return [
        name
        for i, name in enumerate(FEATURES)
        if all(target[i] > feats[i] + 1e-9 for _d, _s, feats in query.ranked[:rank])
    ]


def main(argv: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="sets", action="append", required=True, help="name:corpus:queryset:metric")
    ap.add_argument("--work", type=Path, required=True, help="folder for the indexes")
    ap.add_argument("--queries-dir", type=Path, default=Path("../shared/corpora/queries"))
    ap.add_argument("--depth", type=int, default=30, help="results re-ranked per query")
    ap.add_argument("--samples", type=int, default=3000, help="random combinations tried")
    ap.add_argument("--folds", type=int, default=0, help="also report a k-fold cross-validated MRR@10")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    loaded = [load_set(spec, args.work, args.queries_dir) for spec in args.sets]
    sets = {name: collect(index, queries, qrels, ids, args.depth) for name, index, queries, qrels, ids, _m in loaded}
    names = list(sets)
    studied, checked = sets[names[0]], [sets[n] for n in names[1:]]
    zero = [0.0] * len(FEATURES)
    weights, _value = fit(studied, checked, args.samples, args.seed)
    report = {
        "set": names[0],
        "queries": len(studied),
        "depth": args.depth,
        "mrr@10": round(mrr(studied, zero), 4),
        "fitted_mrr@10": round(mrr(studied, weights), 4),
        "fitted_weights": {n: round(w, 3) for n, w in zip(FEATURES, weights, strict=True) if w},
        "checked": {n: [round(mrr(sets[n], zero), 4), round(mrr(sets[n], weights), 4)] for n in names[1:]},
    }
    if args.folds:
        report["cv_mrr@10"] = round(cross_validated(studied, checked, args.folds, args.samples, args.seed), 4)
    echo(json.dumps(report, ensure_ascii=False))
    for q in studied:
        fav = favouring(q)
        if fav is not None:
            echo(json.dumps({"qid": q.qid, "favouring_target": fav}, ensure_ascii=False))


if __name__ == "__main__":
    main()
