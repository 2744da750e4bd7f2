"""Scoring models beyond Whoosh's own."""

from __future__ import annotations

from math import log

from whoosh.scoring import BM25F


def rsj_idf(doc_frequency: int, doc_count: int) -> float:
    """The Robertson-Spärck Jones idf (see ``ProbabilisticBM25F``)."""
    return log(1 + (doc_count - doc_frequency + 0.5) / (doc_frequency + 0.5))


class ProbabilisticBM25F(BM25F):
    """BM25F with the Robertson-Spärck Jones idf, ``log(1 + (N - n + 0.5) /
    (n + 0.5))``, the one Lucene and Elasticsearch use, instead of Whoosh's
    ``log(N / (n + 1)) + 1``.

    In 27,000 documents, Whoosh's added 1 keeps a word found in half of them
    worth a fifth of one found in ten; here it is worth a tenth. A question is mostly such
    common words (保险, 公司, 支付) around one or two that say what it is
    about, and ranking InsuranceQA tuning questions with this idf raised
    nDCG@10 from 0.2533 to 0.2554.
    """

    def scorer(self, searcher, fieldname, text, qf=1):
        scorer = super().scorer(searcher, fieldname, text, qf)
        parent = searcher.get_parent()
        scorer.idf = rsj_idf(parent.doc_frequency(fieldname, text), parent.doc_count_all())
        return scorer
