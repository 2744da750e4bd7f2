"""A request's time budget.

A query's cost depends on the words in it and on the index, not on its
length: a few common single characters touch most of a large index. Rather
than hold a worker for as long as a query takes, the engine gives each
request a deadline; the scoring loops look at the clock now and then (a
posting block, a few hundred documents) and stop when it has passed, and
the engine answers with what it has found, marked partial.

The clock is the CPU time of the thread answering (a search never yields
to another request midway, under gevent either): a wall-clock budget ran
out for ordinary searches while an indexing run or a burst of requests
kept the machine busy, so the same query got a full answer, a partial one
or a refusal depending on the load. Counted in CPU, a query is refused for
what it costs, the same way every time on the same machine.

The deadline lives in a context variable, so each request (thread or
greenlet) has its own, and code outside a request runs without one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from whoosh.searching import TimeLimit

_DEADLINE: ContextVar[float | None] = ContextVar("zhsearch_deadline", default=None)


class OutOfTime(TimeLimit):
    """The request's time budget is spent (Whoosh's own ``TimeLimit``, so
    its collectors give their partial results as for their own limit)."""


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now (none if 0 or None)."""
    token = _DEADLINE.set(time.thread_time() + seconds if seconds else None)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_time() -> None:
    """Raise ``OutOfTime`` once the current deadline has passed."""
    deadline = _DEADLINE.get()
    if deadline is not None and time.thread_time() > deadline:
        raise OutOfTime


def out_of_time() -> bool:
    deadline = _DEADLINE.get()
    return deadline is not None and time.thread_time() > deadline
