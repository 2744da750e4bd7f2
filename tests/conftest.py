"""Shared fixtures: real indexes on disk, built with real jieba."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from indexer.config import Settings
from indexer.writer import IndexSummary, index_paths
from search.engine import SearchEngine, SearchRequest, SearchResult
from search.query import Weights

ROOT = Path(__file__).resolve().parent.parent
SHARED_CORPORA = Path(os.environ.get("ZHSEARCH_SHARED_CORPORA", ROOT.parent / "shared" / "corpora"))
SAMPLE = ROOT / "indexer" / "data" / "sample-articles.jsonl"
#: Three paragraphs of an article, as HTML, for pages the tests write.
PARAS = "".join(
    f"<p>{t}</p>"
    for t in (
        "今年的黑色星期五，不少跨境卖家提前一个月开始备货，重点投放搜索广告和社交媒体广告。",
        "从第三方数据看，家居和户外品类的销售额增长最快，电子配件的竞争则更加激烈。",
        "有卖家表示，物流时效仍然是影响转化率的关键因素，海外仓的优势在大促期间更加明显。",
    )
)


@contextlib.contextmanager
def _turn(folder: Path, alone: bool) -> Iterator[None]:
    """Hold this process's turn to run a test, among the pytest-xdist
    workers that share ``folder``.

    Most tests run side by side. A test marked ``alone`` bounds wall-clock
    time tightly against the work it does (a search's CPU budget against
    2 s, say), so it runs with no other test running: it closes the gate
    (no test starts after that), then waits for the running ones to end.
    Other tests pass the gate, so one waiting to run alone is not starved.
    Locks are released explicitly: a process forked during the test holds
    a copy of the descriptors, and closing ours would not release them."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "gate.lock", "a") as gate, open(folder / "running.lock", "a") as running:
        try:
            if alone:
                fcntl.flock(gate, fcntl.LOCK_EX)
                fcntl.flock(running, fcntl.LOCK_EX)
            else:
                fcntl.flock(gate, fcntl.LOCK_SH)
                fcntl.flock(running, fcntl.LOCK_SH)
                fcntl.flock(gate, fcntl.LOCK_UN)
            yield
        finally:
            fcntl.flock(running, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


def _turns(item: pytest.Item) -> Path | None:
    """The folder of the run's turn locks under pytest-xdist (each
    worker's base temporary folder lies in the run's own), or None in a
    run of one process, where a test runs alone anyway."""
    if not hasattr(item.config, "workerinput"):
        return None
    return Path(item.config.option.basetemp).parent / "turns"


def _beside_others(item: pytest.Item, if_alone: bool) -> contextlib.AbstractContextManager[None]:
    """A shared turn for ``item`` when whether it is marked ``alone`` is
    ``if_alone`` (and it runs under pytest-xdist); otherwise none."""
    folder = _turns(item)
    if folder is None or bool(item.get_closest_marker("alone")) != if_alone:
        return contextlib.nullcontext()
    return _turn(folder, alone=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A test runs beside others for its setup (fixtures of wider scope
    included), call and teardown. One marked ``alone`` runs beside others
    for its setup and teardown (``pytest_runtest_setup``), and its call
    alone (``pytest_runtest_call``)."""
    with _beside_others(item, if_alone=False):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """The setup of a test marked ``alone`` takes its turn like any test's:
    it may build an index on every core (the poetry-20k fixture does), and
    must not do so while another ``alone`` test's call is timed."""
    if item.nodeid in _UNGROUPED:
        pytest.fail(
            "pytest-xdist did not put this test in its xdist_group: this pytest is newer "
            "than pytest-xdist's support for groups (see the pin in pyproject.toml)",
            pytrace=False,
        )
    with _beside_others(item, if_alone=True):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """As its setup: the fixtures torn down after a test marked ``alone``
    may stop servers or a cluster, which is work too."""
    with _beside_others(item, if_alone=True):
        return (yield)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cluster tests (two groups, the suite's longest: about four and
    three minutes in a full run) are handed out first, so the rest of the suite runs beside
    them rather than after.
    Under ``--dist=loadgroup``, a test of an ``xdist_group`` whose node id
    does not name its group would be run on any worker, beside tests it
    must not run beside, and the fixtures its group shares would be built
    once per worker: it fails (``pytest_runtest_setup``)."""
    items.sort(key=lambda item: not any(m.args[:1] == ("cluster",) for m in item.iter_markers("xdist_group")))
    if getattr(config.option, "loadgroup", False):
        _UNGROUPED.update(i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid)


#: Tests of an ``xdist_group`` that pytest-xdist could not group.
_UNGROUPED: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The call of a test marked ``alone`` waits until no other test runs."""
    folder = _turns(item)
    if folder is None or not item.get_closest_marker("alone"):
        return (yield)
    with _turn(folder, alone=True):
        return (yield)


#: For the tests of the session's shared servers (``sample_server``) and
#: crawl index (``crawl_index``, 30 s to build): one worker runs them all,
#: and builds and starts each once.
ON_SHARED_SERVERS = pytest.mark.xdist_group("servers")


def search_command() -> list[str]:
    """The installed `search` console script (or the module, uninstalled)."""
    exe = Path(sys.executable).with_name("search")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    index: Path, dev: bool = False, options: Sequence[str] = ("--workers", "2"), env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`search serve --workers 2` (or ``--dev``, or other ``options``) over
    ``index`` on 127.0.0.1, started in a session of its own; yields its
    base URL (once it answers anything, an error included) and its
    process, and stops it afterwards."""
    port = free_port()
    env = {**os.environ, **(env or {}), "ZHSEARCH_INDEX": str(index)}
    mode = ["--dev"] if dev else list(options)
    proc = subprocess.Popen(
        [*search_command(), "serve", "--port", str(port), *mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/api/health", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # answering, if only with an error
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    pytest.fail(f"search serve did not start: {out}")
                time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def sample_command_index(tmp_path_factory) -> Path:
    """The sample articles indexed by the real `search index --sample`
    command, once per session. Never served or changed itself: tests serve
    or damage copies of it (a copy takes milliseconds, a build a process
    start and the whole analysis)."""
    index = tmp_path_factory.mktemp("sample-command") / "index"
    env = {**os.environ, "ZHSEARCH_INDEX": str(index)}
    subprocess.run([*search_command(), "index", "--sample"], check=True, env=env, capture_output=True, timeout=300)
    return index


@pytest.fixture(scope="session")
def sample_server(tmp_path_factory, sample_command_index: Path) -> Iterator[str]:
    """The base URL of one `search serve --workers 2` over the sample
    articles, shared by the tests that only read from it."""
    index = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(sample_command_index, index)
    with running_server(index) as (base, _proc):
        yield base


def shared_corpus(name: str) -> Path:
    """A file of the shared corpora, or a skip saying where it was looked for."""
    path = SHARED_CORPORA / name
    if not path.exists():
        pytest.skip(f"shared corpus {name} not found at {path} (set ZHSEARCH_SHARED_CORPORA)")
    return path


def write_jsonl(path: Path, records: Iterable[dict | str]) -> Path:
    """Write records (dicts, or raw lines for malformed input) as JSON Lines."""
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False)) + "\n")
    return path


class IndexHarness:
    """A real index in a temporary folder, fed and searched through the
    same library calls the CLI and the web app use."""

    def __init__(self, root: Path, **overrides) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.settings = Settings.load({"index": root / "index", **overrides}, environ={})
        self.engine = SearchEngine(self.settings)
        self._n = 0

    def add(self, records: Iterable[dict | str]) -> IndexSummary:
        self._n += 1
        path = write_jsonl(self.root / f"batch-{self._n}.jsonl", records)
        return index_paths(self.settings, [str(path)])

    def search(self, q: str, **kwargs) -> SearchResult:
        return self.engine.search(SearchRequest(q=q, **kwargs))

    def ids(self, q: str, **kwargs) -> list[str]:
        return [h.id for h in self.search(q, **kwargs).hits]

    def weighted(self, **changes) -> SearchEngine:
        """An engine over the same index with some ranking weights changed,
        to show what a part of the ranking does by switching it off."""
        return SearchEngine(self.settings, weights=dataclasses.replace(Weights(), **changes))


@pytest.fixture
def make_index(tmp_path: Path) -> Callable[..., IndexHarness]:
    def make(records: Iterable[dict | str] = ()) -> IndexHarness:
        harness = IndexHarness(tmp_path)
        records = list(records)
        if records:
            harness.add(records)
        return harness

    return make


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory) -> IndexHarness:
    """The shipped sample articles, indexed once for the session."""
    harness = IndexHarness(tmp_path_factory.mktemp("sample"))
    summary = index_paths(harness.settings, [str(SAMPLE)])
    assert summary.added >= 50 and not summary.rejected
    return harness


@pytest.fixture(scope="session")
def crawl_index(tmp_path_factory) -> Path:
    """The shared crawl of three documentation sites, indexed once per test
    run with the example site rules (the quick way to index it), by the
    real command."""
    html = shared_corpus("html")
    index = tmp_path_factory.mktemp("crawl") / "index"
    env = {**os.environ, "ZHSEARCH_INDEX": str(index)}
    rules = ROOT / "indexer" / "data" / "site-rules.example.toml"
    subprocess.run(
        [*search_command(), "index", "--site-rules", str(rules), str(html)],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    return index


def term_postings(reader, fieldname: str, text: bytes, deleted_too: bool = False) -> list[tuple]:
    """(id, weight, value) of a term's postings (a reader's own postings
    leave out its deleted documents)."""
    if deleted_too:
        m = reader._terms.matcher(fieldname, text, reader.schema[fieldname].format)
    else:
        m = reader.postings(fieldname, text)
    out = []
    while m.is_active():
        out.append((m.id(), m.weight(), m.value()))
        m.next()
    return out


def term_stats(info) -> list:
    """What a term info says, for comparing two of them."""
    return [
        info.weight(),
        info.doc_frequency(),
        info.min_length(),
        info.max_length(),
        info.max_weight(),
        info.min_id(),
        info.max_id(),
    ]
