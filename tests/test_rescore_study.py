"""The re-ranking study's arithmetic (benchmarks/rescore_study.py): its
figures are quoted in closing notes, so what it fits and reports must be
right on hand-made rankings."""

from benchmarks.rescore_study import FEATURES, Query, doc_features, favouring, fit, mrr


def _query(qid: str, target: str, rows: list[tuple[str, float, dict[str, float]]]) -> Query:
    ranked = [(doc_id, score, [feats.get(name, 0.0) for name in FEATURES]) for doc_id, score, feats in rows]
    return Query(qid, {target: 2}, ranked)


def test_a_feature_that_separates_targets_is_found_and_fitted():
    # In both queries the target is second, and only "early" sets it apart.
    queries = [
        _query("q1", "b", [("a", 1.0, {"early": 0.1}), ("b", 0.97, {"early": 0.9}), ("c", 0.5, {})]),
        _query("q2", "y", [("x", 1.0, {"cjk_share": 0.9}), ("y", 0.95, {"early": 0.8, "cjk_share": 0.9})]),
    ]
    zero = [0.0] * len(FEATURES)
    assert mrr(queries, zero) == 0.5
    assert favouring(queries[0]) == ["early"]
    assert favouring(queries[1]) == ["early"]
    weights, _objective = fit(queries, [], samples=0, seed=0)
    assert mrr(queries, weights) == 1.0
    assert weights[FEATURES.index("early")] > 0


def test_a_target_already_first_or_missing_has_nothing_to_explain():
    first = _query("q", "a", [("a", 1.0, {}), ("b", 0.5, {})])
    missing = _query("q", "z", [("a", 1.0, {})])
    assert favouring(first) is None
    assert favouring(missing) is None
    assert mrr([missing], [0.0] * len(FEATURES)) == 0.0


def test_document_features_read_positions_titles_and_script():
    feats = dict(
        zip(
            FEATURES[-7:],
            doc_features(["删除", "透视"], "删除数据透视表", "删除数据透视表时，请先选中。", ["删除"]),
            strict=True,
        )
    )
    assert feats["early"] == 1 / (1 + 4 / 50)  # 透视, the later word, starts at 4
    assert feats["title_holds"] == 0.0  # 删除透视 is not one string in the title
    assert feats["has_tags"] == 1.0
    assert feats["cjk_share"] == 12 / 14  # the comma and full stop count as characters
    whole = dict(zip(FEATURES[-7:], doc_features(["背景", "颜色"], "背景颜色", "背景颜色", []), strict=True))
    assert whole["title_is"] == 1.0 and whole["title_holds"] == 1.0 and whole["has_tags"] == 0.0
