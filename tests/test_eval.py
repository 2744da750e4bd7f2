"""`search eval`: the metrics, and a small real evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from search.evaluate import load_qrels, score_ranking

from conftest import shared_corpus, write_jsonl


def test_score_ranking_metrics():
    rel = {"a": 1, "b": 2}
    s = score_ranking(["x", "b", "y", "a"], rel)
    assert s["mrr@10"] == 0.5
    assert s["recall@10"] == 1.0
    import math

    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert s["ndcg@10"] == pytest.approx(dcg / idcg)
    assert score_ranking([], rel) == {"mrr@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "ndcg@10": 0.0}
    assert score_ranking(["x"] * 10 + ["a"], rel)["recall@100"] == 0.5


def test_qrels_in_both_forms(tmp_path):
    trec = tmp_path / "q.qrels"
    trec.write_text("q1 0 a 2\nq1 0 b 1\nq2 0 c 1\n")
    js = write_jsonl(
        tmp_path / "q.qrels.jsonl", [{"qid": "q1", "relevant": {"a": 2, "b": 1}}, {"qid": "q2", "relevant": {"c": 1}}]
    )
    assert load_qrels(trec) == load_qrels(js) == {"q1": {"a": 2, "b": 1}, "q2": {"c": 1}}


FLOORS = json.loads((Path(__file__).parent / "relevance-floors.json").read_text(encoding="utf-8"))


def _subset(tmp_path: Path, corpus_name: str, qrels_path: Path, others: int) -> Path:
    """The judged documents among the first ``others`` of a corpus."""
    judged = {d for rels in load_qrels(qrels_path).values() for d in rels}
    picked = []
    with open(shared_corpus(corpus_name), encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < others or json.loads(line)["id"] in judged:
                picked.append(line.rstrip("\n"))
    return write_jsonl(tmp_path / f"{corpus_name}.subset.jsonl", picked)


@pytest.mark.parametrize(
    "qset, corpus_name, others",
    [("knownitem_poetry", "poetry-20k.jsonl", 400), ("knownitem_html", "articles-html.jsonl", 300)],
)
def test_relevance_gate(tmp_path, qset, corpus_name, others):
    """The relevance gate: the dev queries over their judged documents and a
    few hundred others must keep MRR@10 above the recorded floor. A broken
    analysis (no script folding, no phrase grams, lost lead or proximity)
    fails it."""
    queries = shared_corpus(f"queries/{qset}.queries.jsonl")
    qrels_path = shared_corpus(f"queries/{qset}.qrels")
    subset = _subset(tmp_path, corpus_name, qrels_path, others)
    result = CliRunner().invoke(
        cli, ["eval", "--corpus", str(subset), "--queries", str(queries), "--qrels", str(qrels_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert set(figures) >= {
        "queries",
        "mrr@10",
        "recall@10",
        "recall@100",
        "ndcg@10",
        "index_seconds",
        "query_ms_p50",
        "query_ms_p95",
    }
    assert figures["queries"] == 90
    assert figures["mrr@10"] >= FLOORS[qset], figures


def test_question_relevance_gate(tmp_path):
    """The gate for questions: 200 InsuranceQA dev questions over their
    judged answers and 2,000 other answers must keep nDCG@10 above the
    recorded floor. Ranking questions without their second look by
    characters (0.4217), or by their words alone, without the gram bag,
    the question idf and saturation (0.3857), fails it."""
    from search.evaluate import load_queries, sample_queries

    queries_path = shared_corpus("queries/insuranceqa.queries.jsonl")
    qrels_path = shared_corpus("queries/insuranceqa.qrels")
    picked = sample_queries(load_queries(queries_path), 200, seed=0)
    qrels = load_qrels(qrels_path)
    judged = {d for q in picked for d in qrels.get(q.qid, {})}
    write_jsonl(tmp_path / "q.jsonl", [{"qid": q.qid, "query": q.query} for q in picked])
    lines = []
    with open(shared_corpus("insuranceqa-answers.jsonl"), encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i < 2000 or json.loads(line)["id"] in judged:
                lines.append(line.rstrip("\n"))
    subset = write_jsonl(tmp_path / "answers.jsonl", lines)
    args = ["eval", "--corpus", str(subset), "--queries", str(tmp_path / "q.jsonl"), "--qrels", str(qrels_path)]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["queries"] == 200 and figures["failed_queries"] == 0
    assert figures["ndcg@10"] >= FLOORS["insuranceqa"], figures
