"""The shipped sample articles: what the README's first command searches."""

from __future__ import annotations

import json

from conftest import SAMPLE


def test_sample_is_sixty_articles_with_every_field():
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 60
    for r in records:
        assert set(r) == {"id", "url", "title", "body", "tags", "published", "source", "author"}
        assert 200 <= len(r["body"]) <= 800


def test_sample_searches(sample_index):
    assert "sample-014" in sample_index.ids("tiktok")  # written in full width
    assert sample_index.ids('"iPhone 15"')[0] == "sample-023"
    assert sample_index.ids("第3季度")[0] == "sample-031"
    assert sample_index.ids("春归") == ["sample-052"]
    # The Traditional article is found by a Simplified query.
    assert "sample-046" in sample_index.ids("亚马逊 跨境电商")
    # Exact phrase: the article with 跨境 and 电商 apart is not a phrase match.
    assert "sample-040" in sample_index.ids("跨境 电商", size=100)
    assert "sample-040" not in sample_index.ids('"跨境电商"', size=100)


def test_sample_facets_are_meaningful(sample_index):
    assert sample_index.search("tag:物流").total > 5
    assert sample_index.search("date:2022").total > 5
    assert sample_index.search("date:2025").total > 5
