"""The serving worker's background thread: it notices commits and makes
them live, off the request path.

A gunicorn gevent worker runs its requests as greenlets of one OS thread;
work done in a greenlet (opening a commit, building the did-you-mean
table for a new generation: seconds of CPU) holds every request of that
worker until it ends, which froze the site for 4-14 s after a rebuild.
This thread is a real OS thread even where gevent has patched
``threading``, so the interpreter shares the CPU between it and the
requests (the GIL switches every few milliseconds), and it shares nothing
with them but the state object it swaps in whole.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from indexer.threads import original

log = logging.getLogger(__name__)


class Refresher:
    """Two OS threads: one looks for a new commit every ``interval`` seconds
    and swaps it in (``engine.refresh_now``); the other keeps the tables
    derived from the whole index up to date (``engine.refresh_tables``),
    so a long table build never delays a commit becoming searchable."""

    def __init__(self, engine: Any, interval: float, tables_interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self.tables_interval = tables_interval
        self._stopped = False
        self._sleep = original("time", "sleep")
        #: Rounds done, and failures seen (for tests and logs).
        self.rounds = 0
        self.failures = 0

    def start(self) -> None:
        settle_garbage(full=True)  # what the warm-up made is here to stay
        start = original("_thread", "start_new_thread")
        start(self._loop, (self.engine.refresh_now, self.interval, False))
        start(self._loop, (self.engine.refresh_tables, self.tables_interval, True))

    def stop(self) -> None:
        self._stopped = True
        gc.unfreeze()  # the process goes on without a refresher

    def _loop(self, work, interval: float, full: bool) -> None:
        while not self._stopped:
            started = time.monotonic()
            try:
                if work():
                    settle_garbage(full)
            except Exception as err:  # noqa: BLE001 - the live commit keeps serving
                # A missing or damaged commit: requests keep the one they
                # have (and report damage to it themselves).
                self.failures += 1
                if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                    log.warning("index refresh failed (%s: %s); serving the previous commit", type(err).__name__, err)
            self.rounds += 1
            self._sleep(max(0.0, interval - (time.monotonic() - started)))


def settle_garbage(full: bool) -> None:
    """Keep what a worker holds for long out of the cyclic collector's way.

    A full collection visits every object the worker holds (the did-you-mean
    and completion tables, per-segment caches: some 300,000 objects, about
    130 ms with the interpreter lock held, so every request of the worker
    waits), and CPython starts one whenever the objects that survived grew
    by a quarter, which each commit and the answer cache make happen.
    Freezing what is there after a commit was opened moves it out of the
    collector's generations (``gc.freeze``), so collections visit only what
    was made since. Cycles among frozen objects would wait forever: with
    ``full`` (after the tables were rebuilt, which happens for a new
    generation and at most every few minutes otherwise) everything is
    unfrozen and collected once first.
    """
    if full:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
