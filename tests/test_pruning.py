"""Questions keep their best documents without scoring every match
(search/pruning.py): the same documents, order, scores and counts as
scoring them all, over InsuranceQA dev questions."""

from __future__ import annotations

import json

import pytest

import search.collect as se
from search.engine import SearchRequest
from search.evaluate import load_queries, sample_queries
from search.pruning import TopAnyWord, TopScored, ranked_top
from search.query import Exhaustive, compile_query, parse_query
from search.terms import BulkTerm

from conftest import IndexHarness, shared_corpus

#: One worker runs these tests, and indexes the answers once.
pytestmark = pytest.mark.xdist_group("answers")

#: Dev questions compared (as ``search eval --sample`` draws them).
QUESTIONS = 150
#: Answers indexed besides the judged answers of those questions.
OTHERS = 2500


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> tuple[IndexHarness, list[str]]:
    """The questions, and an index of their judged answers and a few
    thousand others: two segments, one with deleted answers, and a tag
    on each answer for the facets."""
    from search.evaluate import load_qrels

    picked = sample_queries(load_queries(shared_corpus("queries/insuranceqa.queries.jsonl")), QUESTIONS, seed=0)
    qrels = load_qrels(shared_corpus("queries/insuranceqa.qrels"))
    judged = {d for q in picked for d in qrels.get(q.qid, {})}
    records = []
    with open(shared_corpus("insuranceqa-answers.jsonl"), encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            record = json.loads(line)
            if i < OTHERS or record["id"] in judged:
                records.append({**record, "tags": [f"组{len(records) % 7}"]})
    # One indexing process: one segment a batch (a third would be merged).
    harness = IndexHarness(tmp_path_factory.mktemp("answers"), index_procs=1)
    half = len(records) // 2
    harness.add(records[:half])
    harness.add(records[half:])
    harness.add([{"id": r["id"], "deleted": True} for r in records[:half:40]])
    # The few without a question word are keywords, not ranked this way.
    return harness, [q.query for q in picked if _is_question(q.query)]


def _is_question(text: str) -> bool:
    return compile_query(parse_query(text)).rank_loose


def _differences(harness: IndexHarness, questions: list[str], limits=(100, 10)) -> list[tuple[str, int]]:
    """The (question, limit) pairs whose best documents, their order and
    scores, or the number of matches differ between the pruned ranking and
    scoring every match."""
    engine = harness.engine
    searcher = engine.searcher()
    out = []
    for text in questions:
        compiled = compile_query(parse_query(text), engine.segmentation, engine.weights, engine.synonyms.alternatives)
        for limit in limits:
            kwargs = {"limit": limit, "filter": None, "mask": None, "optimize": False}
            ours, partial = se._run(searcher, Exhaustive(ranked_top(compiled.strict, limit)), kwargs)
            theirs, _partial = se._run(searcher, Exhaustive(compiled.strict), kwargs)
            assert not partial
            same = (
                [h.docnum for h in ours] == [h.docnum for h in theirs]
                and [h.score for h in ours] == pytest.approx([h.score for h in theirs], rel=1e-9, abs=1e-9)
                and len(ours) == len(theirs)
            )
            if not same:
                out.append((text, limit))
    return out


def test_pruned_questions_rank_as_scoring_every_match(answers):
    harness, questions = answers
    searcher = harness.engine.searcher()
    leaves = [sub.reader() for sub, _offset in searcher.leaf_searchers()]
    assert len(leaves) >= 2 and any(r.has_deletions() for r in leaves)
    assert _differences(harness, questions) == []
    # And it does prune: most questions keep a small part of their matches.
    kept = matched = 0
    for text in questions[:20]:
        compiled = compile_query(parse_query(text), harness.engine.segmentation, harness.engine.weights)
        q = ranked_top(compiled.strict, 100)
        assert isinstance(q.child, TopAnyWord)
        for sub, _offset in searcher.leaf_searchers():
            m = q.matcher(sub, sub.context())
            assert isinstance(m, TopScored)
            kept += len(m.remaining()[0])
            matched += m.matches.count()
    assert kept * 3 < matched


def test_a_bound_too_low_is_caught(answers, monkeypatch):
    # What the comparison is worth: bounds a tenth too low let the pruning
    # drop documents that belong in the top results, and it notices.
    harness, questions = answers
    true_bound = BulkTerm.bound
    monkeypatch.setattr(BulkTerm, "bound", lambda self: 0.9 * true_bound(self))
    assert _differences(harness, questions)


def test_question_answers_match_scoring_every_match(answers, monkeypatch):
    # Through the engine, second look by characters and facets included:
    # the same page, total, count of answers holding every word and facet
    # counts as without pruning.
    harness, questions = answers
    engine = harness.engine

    def answer(text: str, **kwargs):
        if engine._live is not None:
            engine._live.cache.clear()  # the other run's answers
        result = engine.search(SearchRequest(q=text, snippets=False, **kwargs))
        return [(h.id, h.score) for h in result.hits], result.total, result.all_words, result.facets

    requests = [{"size": 100}, {"size": 10, "facets": True}, {"size": 10, "page": 3}]
    pruned = [answer(text, **kw) for text in questions[:30] for kw in requests]
    monkeypatch.setattr(se, "ranked_top", lambda q, k: q)
    monkeypatch.setattr(se, "_count", _scored_count)
    exhaustive = [answer(text, **kw) for text in questions[:30] for kw in requests]
    assert pruned == exhaustive
    assert sum(total > all_words > 0 for _hits, total, all_words, _facets in pruned) > 20
    assert any(facets and facets["tags"] for _hits, _total, _all, facets in pruned)


def _scored_count(searcher, q):
    """How the engine counted the answers holding every word before:
    collecting them."""
    every, partial = se._run(searcher, Exhaustive(q), {"limit": 1, "filter": None, "mask": None, "optimize": False})
    return len(every), partial
