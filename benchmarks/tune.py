"""Tune ranking weights (search.query.Weights) on judged dev query sets.

Coordinate ascent: for each parameter in turn, try the candidate values with
the others fixed, keep the best, and repeat for a few rounds. The objective
is the mean of each set's metric (MRR@10 for known-item sets, nDCG@10 for
InsuranceQA). Indexes are built once into --work (reused when present), so a
step costs only the queries.

    python benchmarks/tune.py --work /tmp/zhsearch-tune \\
        --set html:../shared/corpora/articles-html.jsonl:knownitem_html:mrr@10 \\
        --set poetry:../shared/corpora/poetry-20k.jsonl:knownitem_poetry:mrr@10 \\
        --set insurance:../shared/corpora/insuranceqa-answers.jsonl:insuranceqa:ndcg@10:1000

Only dev splits are used (the query files shipped are dev splits). The values
chosen are recorded in search/query.py (Weights) with the figures they gave.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from indexer.config import Settings
from indexer.store import IndexStore
from indexer.writer import existing_hashes, index_paths
from search.engine import SearchEngine
from search.evaluate import evaluate, load_qrels, load_queries, sample_queries
from search.query import Weights

#: Candidate values per parameter (the current value is always tried too).
SPACE: dict[str, list] = {
    "title": [1.0, 1.5, 2.0, 3.0, 4.0],
    "lead": [1.0, 1.5, 2.0, 3.0, 4.0],
    "body": [0.5, 1.0, 1.5],
    "tags": [0.5, 1.0, 2.0, 3.0],
    "author": [0.5, 1.0, 2.0, 3.0],
    "gram": [0.2, 0.4, 0.6, 1.0],
    "proximity": [0.0, 0.5, 1.0, 2.0],
    "near": [1.0, 3.0, 5.0, 8.0, 12.0],
    "near_slop": [4, 8, 12, 20],
    "k1": [0.8, 1.2, 1.6, 2.0],
    "b": [0.5, 0.65, 0.75, 0.9],
    "title_b": [0.2, 0.5, 0.75],
    "lead_b": [0.0, 0.3, 0.6],
    "question_words": [1, 3, 4, 99],
    "question_lead": [0.25, 0.5, 0.75, 1.0],
    "question_grams": [0.0, 0.35, 0.5, 0.75],
    "question_k1": [0.4, 0.5, 0.8, 1.2],
    "question_chars": [0.0, 0.35, 0.5, 0.7],
    "question_chars_b": [0.6, 0.75, 0.9],
}


def load_set(spec: str, work: Path, queries_dir: Path, holdout: int = 0):
    parts = spec.split(":")
    name, corpus, qset, metric = parts[:4]
    sample = int(parts[4]) if len(parts) > 4 else None
    index = work / name
    if not IndexStore(index).exists():
        print(f"indexing {corpus} into {index}", file=sys.stderr)
        index_paths(Settings(index=index), [corpus])
    queries = load_queries(queries_dir / f"{qset}.queries.jsonl")
    if sample and holdout:
        # Leave out the questions `search eval --sample HOLDOUT --seed 0`
        # reports on, so the figures there are not fitted.
        held = {q.qid for q in sample_queries(queries, holdout, seed=0)}
        queries = [q for q in queries if q.qid not in held]
    queries = sample_queries(queries, sample, seed=1)
    qrels = load_qrels(queries_dir / f"{qset}.qrels")
    ids = set(existing_hashes(IndexStore(index).open()))
    return name, index, queries, qrels, ids, metric


def score(weights: Weights, sets) -> tuple[float, dict[str, float]]:
    figures = {}
    for name, index, queries, qrels, ids, metric in sets:
        engine = SearchEngine(Settings(index=index), weights=weights)
        figures[name] = evaluate(engine, queries, qrels, ids)[metric]
        engine.close()
    return sum(figures.values()) / len(figures), figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="sets", action="append", required=True, help="name:corpus:queryset:metric[:sample]")
    ap.add_argument("--work", type=Path, required=True, help="folder for the indexes")
    ap.add_argument("--queries-dir", type=Path, default=Path("../shared/corpora/queries"))
    ap.add_argument("--params", default=",".join(SPACE), help="parameters to tune, in order")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--holdout",
        type=int,
        default=1000,
        help="for sampled sets, leave out the queries `search eval --sample N --seed 0` draws",
    )
    args = ap.parse_args()
    sets = [load_set(s, args.work, args.queries_dir, args.holdout) for s in args.sets]
    best = Weights()
    best_score, figures = score(best, sets)
    print(json.dumps({"start": dataclasses.asdict(best), "score": round(best_score, 4), **figures}), flush=True)
    for _round in range(args.rounds):
        improved = False
        for param in args.params.split(","):
            for value in SPACE[param]:
                if value == getattr(best, param):
                    continue
                candidate = dataclasses.replace(best, **{param: value})
                s, f = score(candidate, sets)
                if s > best_score + 1e-4:
                    best, best_score, figures, improved = candidate, s, f, True
                    print(json.dumps({param: value, "score": round(s, 4), **f}), flush=True)
        if not improved:
            break
    print(json.dumps({"best": dataclasses.asdict(best), "score": round(best_score, 4), **figures}))


if __name__ == "__main__":
    main()
