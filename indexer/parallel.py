"""Building an index on every core: Whoosh's multiprocess writer, made safe.

Whoosh's ``MpWriter`` hands batches of documents to worker processes, each
of which analyses them and writes a segment of its own (``multisegment``:
no final merge). As shipped it fails quietly: a worker that dies (a full
disk, say) prints a traceback and its segment is simply left out of the
commit, and ``cancel()`` never reaches the workers. This subclass makes a
worker's failure an exception in the parent (before anything is
committed), terminates workers on cancel, and makes them daemons so a dying
parent cannot hang on them.
"""

from __future__ import annotations

import errno as errno_module
import os
import queue
import signal

from whoosh.multiproc import MpWriter, SubWriterTask

from indexer.codec import FastSegmentWriter
from indexer.store import release_inherited_locks

#: Seconds the parent waits for a finished worker's report.
REPORT_TIMEOUT = 60.0
#: Characters of text a batch may hold before it goes to a worker, however
#: few its documents: 256 documents of 5 MB each are over a gigabyte.
BATCH_CHARS = 8_000_000


class WorkerFailed(OSError):
    """A worker process could not index its documents."""


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies (a SIGKILLed
    parent would otherwise leave workers blocked on the job queue)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(1)


class _Task(SubWriterTask):
    def run(self) -> None:
        _die_with_parent()
        # The writer lock belongs to the parent: a worker must not keep it
        # held (a lock lives as long as any copy of its descriptor).
        release_inherited_locks()
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - reported to the parent instead
            code = getattr(err, "errno", None)
            message = getattr(err, "strerror", None) or str(err) or type(err).__name__
            try:
                self.resultqueue.put(("failed", code, message), timeout=5)
            except Exception:  # noqa: BLE001 - the parent times out and reports it
                pass

    def _run(self) -> None:
        # SubWriterTask.run, multisegment case, with our segment writer.
        ix = self.storage.open_index(self.indexname)
        writer = self.writer = FastSegmentWriter(ix, _lk=False, **self.kwargs)
        while self.running:
            job = self.jobqueue.get()
            if job is None:
                break
            self._process_file(*job)
        if not self.running:
            writer.cancel()
            return
        # A worker ends with os._exit: keep the pooled postings referenced
        # so the pool's cleanup does not free millions of lists one by one
        # first (a twentieth of a worker's time).
        self._postings = getattr(writer.pool, "_fields", None)
        segment = writer._finalize_segment()
        self.resultqueue.put((None, set(), segment), timeout=5)


class _Reports:
    """The parent's view of the result queue: a worker's failure, or a worker
    that never reports, becomes an exception rather than a missing segment."""

    def __init__(self, results) -> None:
        self._results = results

    def get(self, timeout: float | None = None):
        try:
            item = self._results.get(timeout=max(timeout or 0, REPORT_TIMEOUT))
        except queue.Empty:
            raise WorkerFailed(errno_module.EIO, "an indexing worker stopped without reporting") from None
        if isinstance(item, tuple) and len(item) == 3 and item[0] == "failed":
            raise WorkerFailed(item[1] or errno_module.EIO, item[2])
        return item

    def put(self, *args, **kwargs):
        return self._results.put(*args, **kwargs)


class ParallelWriter(MpWriter):
    """``MpWriter`` with failures that surface and workers that stop."""

    def __init__(self, ix, procs: int, **kwargs) -> None:
        super().__init__(ix, procs=procs, multisegment=True, **kwargs)
        self._raw_results = self.resultqueue
        self.resultqueue = _Reports(self._raw_results)

    def add_document(self, **fields) -> None:
        self._batch_chars = getattr(self, "_batch_chars", 0) + sum(
            len(fields[name]) for name in ("title", "body") if isinstance(fields.get(name), str)
        )
        super().add_document(**fields)
        if self.docbuffer and self._batch_chars >= BATCH_CHARS:
            self._enqueue()

    def _enqueue(self) -> None:
        self._batch_chars = 0
        super()._enqueue()

    def _new_task(self):
        task = _Task(self.storage, self.indexname, self.jobqueue, self._raw_results, self.subargs, self.multisegment)
        task.daemon = True
        self.tasks.append(task)
        task.start()
        return task

    def cancel(self) -> None:
        try:
            for task in self.tasks:
                if task.is_alive():
                    task.terminate()
            for task in self.tasks:
                task.join(timeout=10)
        finally:
            super().cancel()
