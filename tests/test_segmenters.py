"""rjieba (the default segmenter) against jieba (the reference): the same
index terms on Chinese text, and the user dictionary honoured by both."""

from __future__ import annotations

import itertools
import json

from indexer.analysis import Segmentation, normalize, word_analyzer

from conftest import SAMPLE, shared_corpus

JIEBA = word_analyzer(Segmentation(engine="jieba"))
RJIEBA = word_analyzer(Segmentation(engine="rjieba"))


def _terms(analyzer, text: str) -> list[str]:
    return [t.text for t in analyzer(text, mode="index")]


def _paragraphs(records):
    for r in records:
        for text in (r.get("title") or "", r.get("body") or ""):
            yield from (p for p in text.split("\n") if p.strip())


def test_identical_terms_on_the_sample_articles():
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    for para in _paragraphs(records):
        assert _terms(RJIEBA, para) == _terms(JIEBA, para), para


def test_identical_terms_on_mixed_latin_and_rare_ideographs():
    for text in (
        "Wi-Fi热点与e-mail地址",
        "Aegon N.V.公司",
        "访问www.example.com",
        "C++编程、3.5英寸、100%纯棉",
        "鵁䴔䴖飞过",
    ):
        assert _terms(RJIEBA, text) == _terms(JIEBA, text), text


def test_identical_terms_on_real_chinese_text():
    """Paragraphs of poetry (mostly Traditional), insurance answers and help
    pages: all but a handful must give the same terms (jieba and jieba-rs
    weigh a few rare word routes differently, e.g. 常在 vs 常/在)."""
    total = differ = 0
    examples = []
    for name, n in (("poetry-20k.jsonl", 1500), ("insuranceqa-answers.jsonl", 600), ("articles-html.jsonl", 300)):
        with open(shared_corpus(name), encoding="utf-8") as fh:
            records = [json.loads(line) for line in itertools.islice(fh, n)]
        for para in _paragraphs(records):
            total += 1
            if _terms(RJIEBA, para) != _terms(JIEBA, para):
                differ += 1
                examples.append(para[:40])
    assert total > 10_000
    assert differ / total <= 0.0002, (differ, total, examples[:5])


def test_words_are_the_tokens_with_a_word_character():
    # ``words`` skips checking tokens of all-Chinese text; it must give
    # what filtering every token gives, on either kind of text.
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    with open(shared_corpus("poetry-20k.jsonl"), encoding="utf-8") as fh:
        records += [json.loads(line) for line in itertools.islice(fh, 500)]
    texts = [normalize(p) for p in _paragraphs(records)]
    texts += ["床前明月光，疑是地上霜。", "鵁䴔䴖飞过", "下划线_连接", "……——《》", "Wi-Fi热点", "🚀火箭发射"]
    assert sum(1 for t in texts if t.isascii()) < len(texts) // 2
    for engine in ("jieba", "rjieba"):
        seg = Segmentation(engine=engine).segmenter()
        for text in texts:
            expected = [w for w, _s, _e in seg.tokenize(text) if any(ch.isalnum() for ch in w)]
            assert seg.words(text) == expected, (engine, text)
