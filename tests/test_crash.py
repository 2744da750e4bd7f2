"""Crash safety: SIGKILL at many moments, and a full disk, never cost the
live index; re-running the same command converges to the same documents."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from indexer.check import check_index
from indexer.config import Settings
from indexer.writer import export_documents, index_paths
from search.engine import SearchEngine, SearchRequest

from conftest import search_command, write_jsonl

TRIALS = 10
TOPICS = ["跨境物流", "海外仓", "独立站", "支付合规", "直播带货", "品牌出海"]


def _records(start: int, stop: int, version: int = 1) -> list[dict]:
    return [
        {
            "id": f"doc-{i}",
            "title": f"{TOPICS[i % len(TOPICS)]}观察第{i}期",
            "body": f"第{i}篇（版本{version}）。" + f"{TOPICS[i % len(TOPICS)]}的卖家在旺季调整备货与广告投放。" * 12,
            "tags": [TOPICS[i % len(TOPICS)]],
            "published": f"2024-{i % 12 + 1:02d}-{i % 27 + 1:02d}",
        }
        for i in range(start, stop)
    ]


def _snapshot(settings: Settings) -> list[tuple]:
    return sorted(tuple(sorted((k, str(v)) for k, v in r.items())) for r in export_documents(settings))


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """A base index of 600 documents, and a crawl that updates 300 of them,
    adds 1,200 and deletes 50, with the state each command converges to."""
    root = tmp_path_factory.mktemp("crash")
    base = Settings(index=root / "base")
    index_paths(base, [str(write_jsonl(root / "base.jsonl", _records(0, 600)))])
    tombstones = [{"id": f"doc-{i}", "deleted": True} for i in range(550, 600)]
    crawl_file = write_jsonl(
        root / "crawl.jsonl", _records(300, 600, version=2)[:250] + _records(600, 1800) + tombstones
    )
    expected_update = Settings(index=root / "expected-update")
    shutil.copytree(base.index, expected_update.index)
    index_paths(expected_update, [str(crawl_file)])
    expected_rebuild = Settings(index=root / "expected-rebuild")
    index_paths(expected_rebuild, [str(crawl_file)])
    return {
        "root": root,
        "base": base,
        "crawl": crawl_file,
        "update": _snapshot(expected_update),
        "rebuild": _snapshot(expected_rebuild),
        "base_snapshot": _snapshot(base),
    }


def _run(settings: Settings, extra_args: list[str], crawl_file: Path) -> subprocess.Popen:
    env = {**os.environ, "ZHSEARCH_INDEX": str(settings.index)}
    return subprocess.Popen(
        [*search_command(), "index", *extra_args, str(crawl_file)], env=env, stdout=subprocess.DEVNULL
    )


def _kill_trials(crawl, tmp_path, extra_args: list[str], expected) -> list[str]:
    # Time one whole run, then kill at moments spread over it: start-up,
    # reading, writing and the commit.
    timing = Settings(index=tmp_path / "timing")
    shutil.copytree(crawl["base"].index, timing.index)
    started = time.monotonic()
    assert _run(timing, extra_args, crawl["crawl"]).wait() == 0
    duration = time.monotonic() - started
    delays = [duration * (0.08 + 0.9 * n / TRIALS) for n in range(TRIALS)]
    outcomes = []
    for n, delay in enumerate(delays):
        for attempt in range(4):
            # A run can be quicker than the timing run (a warm cache, a
            # quieter machine); then aim a little earlier, still late in it.
            settings = Settings(index=tmp_path / f"trial-{n}-{attempt}")
            shutil.copytree(crawl["base"].index, settings.index)
            proc = _run(settings, extra_args, crawl["crawl"])
            time.sleep(delay)
            finished = proc.poll() is not None
            if not finished:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            if not finished:
                break
            delay *= 0.85
        outcomes.append("finished" if finished else f"killed at {delay:.2f}s")
        report = check_index(settings.index)
        assert report.ok, (delay, report.damage)
        # The index answers, with all the old documents or all the new ones.
        assert SearchEngine(settings).search(SearchRequest(q="卖家 旺季")).total > 0
        assert _snapshot(settings) in (crawl["base_snapshot"], expected), delay
        # Running the same command again converges to the same documents.
        index_paths(settings, [str(crawl["crawl"])], rebuild="--rebuild" in extra_args, force="--force" in extra_args)
        assert _snapshot(settings) == expected, delay
        assert check_index(settings.index).ok
    assert sum(o.startswith("killed") for o in outcomes) >= TRIALS - 1, outcomes
    return outcomes


def test_sigkill_during_index_at_many_moments(crawl, tmp_path):
    outcomes = _kill_trials(crawl, tmp_path, [], crawl["update"])
    print("index:", outcomes)


def test_sigkill_during_rebuild_at_many_moments(crawl, tmp_path):
    # The crawl replaces more than half of the base: the operator forces it.
    outcomes = _kill_trials(crawl, tmp_path, ["--rebuild", "--force"], crawl["rebuild"])
    print("rebuild:", outcomes)


def _limit_file_size():  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


@pytest.mark.parametrize("extra_args", [[], ["--rebuild", "--force"]])
def test_disk_full_ends_with_a_message_and_leaves_the_live_index(crawl, tmp_path, extra_args):
    settings = Settings(index=tmp_path / "full")
    shutil.copytree(crawl["base"].index, settings.index)
    env = {**os.environ, "ZHSEARCH_INDEX": str(settings.index)}
    proc = subprocess.run(
        [*search_command(), "index", *extra_args, str(crawl["crawl"])],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "File too large" in proc.stderr and "unchanged" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert check_index(settings.index).ok
    assert _snapshot(settings) == crawl["base_snapshot"]
