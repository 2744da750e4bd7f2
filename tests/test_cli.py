"""The `search` command, driven through click's runner and as a process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli, sample_data_path

from conftest import search_command, write_jsonl


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def sample_built(tmp_path_factory) -> Path:
    """`search index --sample`, run and checked once for the module: the
    tests below read the same 60 articles, and analysing them again for
    each of them was most of this module's time."""
    path = tmp_path_factory.mktemp("cli-sample") / "ix"
    result = CliRunner().invoke(cli, ["--index", str(path), "index", "--sample"])
    assert result.exit_code == 0, result.output
    assert "60 added" in result.output
    return path


@pytest.fixture
def index_dir(tmp_path, sample_built) -> Path:
    """A copy of the sample index of this test's own (some tests delete
    from it)."""
    path = tmp_path / "ix"
    shutil.copytree(sample_built, path)
    return path


def run(runner, index_dir, *args, env=None):
    return runner.invoke(cli, ["--index", str(index_dir), *args], env=env)


def test_query_human_output_is_plain_when_piped(runner, index_dir):
    result = run(runner, index_dir, "query", "跨境电商", "-n", "3")
    assert result.exit_code == 0, result.output
    assert "results" in result.output and "shown" in result.output
    assert "\x1b[" not in result.output  # no colour when not a terminal
    assert "<mark>" not in result.output
    assert "  1. " in result.output and "  3. " in result.output and "  4. " not in result.output


def test_query_json(runner, index_dir):
    result = run(runner, index_dir, "query", "亚马逊", "--json", "--limit", "5", "--sort", "date")
    data = json.loads(result.output)
    assert set(data) >= {"total", "took_ms", "page", "size", "fallback", "results"}
    assert data["size"] == 5 and len(data["results"]) == 5
    dates = [r["published"][:10] for r in data["results"]]
    assert dates == sorted(dates, reverse=True)
    assert all("<mark>" in r["title_html"] + r["snippet_html"] for r in data["results"])


def test_query_filters_from_flags(runner, index_dir):
    data = json.loads(
        run(runner, index_dir, "query", "卖家", "--tag", "物流", "--since", "2024-01-01", "--json", "-n", "100").output
    )
    assert data["total"] > 0
    for r in data["results"]:
        assert "物流" in r["tags"] and r["published"] >= "2024-01-01"


def test_query_paging(runner, index_dir):
    p1 = json.loads(run(runner, index_dir, "query", "卖家", "--json", "-n", "5").output)
    p2 = json.loads(run(runner, index_dir, "query", "卖家", "--json", "-n", "5", "--page", "2").output)
    assert p1["total"] == p2["total"] > 10
    assert not {r["id"] for r in p1["results"]} & {r["id"] for r in p2["results"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["query", '"跨境电商'], "unbalanced quote"),
        (["query", "OR"], "OR"),
        (["query", "date:2024-02-30"], "not a date"),
        (["query", "电商", "--page", "0"], "page"),
        (["query", "电商", "--limit", "1000"], "size"),
        (["query", "电商", "--since", "June"], "not a date"),
        (["query", "电商", "--sort", "random"], "random"),
    ],
)
def test_bad_query_is_a_message_and_nonzero_exit(runner, index_dir, args, message):
    result = run(runner, index_dir, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_index_is_a_clear_error(runner, tmp_path):
    result = runner.invoke(cli, ["--index", str(tmp_path / "none"), "query", "电商"])
    assert result.exit_code == 1
    assert "no index" in result.output and "search index" in result.output


def test_index_reports_rejections_and_strict_fails(runner, tmp_path):
    crawl = write_jsonl(tmp_path / "crawl.jsonl", [{"id": "a", "title": "跨境"}, "{oops", {"id": "b"}])
    ix = tmp_path / "ix"
    result = runner.invoke(cli, ["--index", str(ix), "index", str(crawl)])
    assert result.exit_code == 0
    assert "1 added" in result.output and "2 rejected" in result.output
    assert f"{crawl}:2" in result.output and f"{crawl}:3" in result.output
    strict = runner.invoke(cli, ["--index", str(ix), "index", "--strict", "--json", str(crawl)])
    assert strict.exit_code == 1
    summary = json.loads(strict.output)
    assert summary["unchanged"] == 1 and len(summary["rejected"]) == 2


def test_index_without_paths_and_with_missing_path(runner, tmp_path):
    assert runner.invoke(cli, ["--index", str(tmp_path / "ix"), "index"]).exit_code == 2
    result = runner.invoke(cli, ["--index", str(tmp_path / "ix"), "index", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_show_export_delete_stats(runner, index_dir, tmp_path):
    shown = json.loads(run(runner, index_dir, "show", "sample-023", "--json").output)
    assert shown["id"] == "sample-023" and "iPhone 15" in shown["body"]
    human = run(runner, index_dir, "show", "sample-023").output
    assert "title:" in human and "iPhone 15" in human
    assert run(runner, index_dir, "show", "nope").exit_code == 1

    out = tmp_path / "backup.jsonl"
    assert run(runner, index_dir, "export", "--out", str(out)).exit_code == 0
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    originals = [json.loads(line) for line in sample_data_path().read_text(encoding="utf-8").splitlines()]
    assert sorted(exported, key=lambda r: r["id"]) == sorted(originals, key=lambda r: r["id"])

    deleted = run(runner, index_dir, "delete", "sample-023", "nope")
    assert deleted.exit_code == 1 and "1 deleted" in deleted.output and "nope" in deleted.output
    assert run(runner, index_dir, "show", "sample-023").exit_code == 1

    stats = json.loads(run(runner, index_dir, "stats", "--json").output)
    assert stats["documents"] == 59 and stats["size_bytes"] > 0 and stats["last_update"]


def test_index_chosen_by_flag_then_environment(runner, index_dir, tmp_path):
    env = {"ZHSEARCH_INDEX": str(index_dir)}
    assert runner.invoke(cli, ["stats", "--json"], env=env).exit_code == 0
    # A flag after the command wins over the environment.
    other = runner.invoke(cli, ["stats", "--index", str(tmp_path / "other")], env=env)
    assert other.exit_code == 1 and "other" in other.output


def test_console_script_runs_as_a_process(index_dir):
    cmd = search_command()
    env = {**os.environ, "ZHSEARCH_INDEX": str(index_dir)}
    proc = subprocess.run(
        [*cmd, "query", "ＴｉｋＴｏｋ", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["total"] >= 1
    bad = subprocess.run([*cmd, "query", '"open'], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "unbalanced quote" in bad.stderr and "Traceback" not in bad.stderr


def test_bench_compares_with_fts5(tmp_path):
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"id": f"d{i}", "title": f"跨境物流第{i}期", "body": "海外仓与独立站卖家的旺季备货。" * 5} for i in range(60)],
    )
    queries = write_jsonl(tmp_path / "q.jsonl", [{"qid": "1", "query": "海外仓"}, {"qid": "2", "query": "独立站 旺季"}])
    questions = write_jsonl(
        tmp_path / "questions.jsonl",
        [
            {"qid": "a", "query": "旺季之前独立站卖家应该怎样给海外仓备货？"},
            {"qid": "b", "query": "跨境物流的第几期讲了海外仓？"},
            {"qid": "c", "query": "卖家为什么要用海外仓而不是直发？"},
        ],
    )
    result = CliRunner().invoke(
        cli,
        ["bench", "--corpus", str(corpus), "--queries", str(queries), "--questions", str(questions), "--sample", "2"]
        + ["--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= {"ours", "fts5", "ratios"} and data["questions"] == 2
    ratios = data["ratios"]
    assert set(ratios) == {
        "build_speed",
        "query_p95",
        "query_p95_snippets",
        "index_size",
        "peak_memory",
        "query_peak_memory",
        "question_p95",
    }
    assert ratios["index_size"] == round(data["ours"]["index_mb"] / max(data["fts5"]["index_mb"], 0.1), 3)
    assert ratios["peak_memory"] == round(data["ours"]["peak_memory_mb"] / data["fts5"]["peak_memory_mb"], 3)
    for side in ("ours", "fts5"):
        assert data[side]["documents"] == 60
        assert data[side]["build_seconds"] > 0 and data[side]["index_mb"] >= 0 and data[side]["peak_memory_mb"] > 0
        assert data[side]["query_peak_memory_mb"] > 0
        assert set(data[side]["query_ms_snippets"]) == set(data[side]["question_ms"]) == {"p50", "p95", "p99"}
    # Without questions, no question figures; the table says what it measured.
    result = CliRunner().invoke(cli, ["bench", "--corpus", str(corpus), "--queries", str(queries)])
    assert result.exit_code == 0, result.output
    assert "index MB" in result.output and "peak_memory" in result.output and "question" not in result.output


def test_words_starting_with_a_dash_are_exclusions_and_options_still_apply(runner, index_dir):
    """The README's own example failed with "No such option '-广'"; with
    ``--`` the options after it became query words."""
    plain = json.loads(run(runner, index_dir, "query", "亚马逊", "--json", "-n", "100").output)
    with_ads = {r["id"] for r in plain["results"] if "广告" in r["title"] + r["snippet_html"]}
    assert with_ads, "the sample should hold 亚马逊 articles about ads"
    result = run(runner, index_dir, "query", "亚马逊", "-广告", "--limit", "100", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["query"] == "亚马逊 -广告" and data["size"] == 100
    assert 0 < data["total"] < plain["total"]
    assert not {r["id"] for r in data["results"]} & with_ads
    one = run(runner, index_dir, "query", "亚马逊", "-广告", "--limit", "1")
    assert one.exit_code == 0 and "  1. " in one.output and "  2. " not in one.output, one.output
    # Attached short option values and "--" still work as before.
    assert json.loads(run(runner, index_dir, "query", "-n1", "亚马逊", "--json").output)["size"] == 1
    dashed = json.loads(run(runner, index_dir, "query", "--json", "--", "亚马逊", "-广告").output)
    assert dashed["total"] == data["total"]


@pytest.mark.parametrize(
    ("args", "status", "code", "field"),
    [
        (["query", '"未闭合', "--json"], 1, "bad_query", "q"),
        (["query", "物流", "--since", "昨天", "--json"], 2, "bad_usage", "since"),
        (["query", "物流", "--json", "--page", "0"], 1, "bad_query", "page"),
        (["query", "--json"], 2, "bad_usage", "text"),
        (["show", "no-such-id", "--json"], 1, "not_found", None),
    ],
)
def test_json_errors_are_json_on_stdout(runner, index_dir, args, status, code, field):
    result = run(runner, index_dir, *args)
    assert result.exit_code == status, result.output
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == (code, field) and error["message"]


def test_json_error_for_a_missing_index(runner, tmp_path):
    result = runner.invoke(cli, ["--index", str(tmp_path / "none"), "query", "物流", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "no_index"


def test_a_closed_pipe_ends_quietly(index_dir):
    """``search query … | head`` printed "Broken pipe"."""
    env = {**os.environ, "ZHSEARCH_INDEX": str(index_dir)}
    for args in (["query", "物流", "-n", "50"], ["query", "物流", "-n", "50", "--json"]):
        proc = subprocess.Popen([*search_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        proc.stdout.close()  # the reader is gone before anything is written
        _, err = proc.communicate(timeout=120)
        assert err.decode() == "", err.decode()
        assert proc.returncode == 1


def test_control_characters_from_documents_never_reach_a_terminal(runner, tmp_path):
    index = tmp_path / "ix"
    crawl = write_jsonl(
        tmp_path / "evil.jsonl",
        [
            {
                "id": "evil\x1b[2J",
                "url": "https://example.com/\x1b]0;owned\x07",
                "title": "物流\x1b[31m红色\x07标题\x9b1m",
                "body": "物流正文\x1b]52;c;ZXZpbA==\x07第二段\r覆盖\x08",
                "source": "来源\x1b[5m",
                "tags": ["物流\x1b[0m"],
            }
        ],
    )
    assert runner.invoke(cli, ["--index", str(index), "index", str(crawl)]).exit_code == 0
    controls = [chr(c) for c in (*range(0, 9), *range(11, 32), *range(127, 160))]
    for args in (
        ["query", "物流"],
        ["show", "evil\x1b[2J"],
        ["query", "物流", "--json"],
        ["show", "evil\x1b[2J", "--json"],
    ):
        result = runner.invoke(cli, ["--index", str(index), *args], color=True)
        assert result.exit_code == 0, result.output
        found = [c for c in controls if c in result.output]
        if "--json" in args:
            assert found == [], (args, found)
            assert "\\u001b" in result.output  # escaped, still there for a script
        else:
            # Only our own colour sequences (ESC [ ... m) may remain.
            stripped = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
            assert [c for c in controls if c in stripped] == [], (args, stripped)
            assert "owned" not in stripped or "\x1b]" not in result.output


def test_question_counts_say_how_many_hold_every_word(runner, index_dir):
    data = json.loads(run(runner, index_dir, "query", "海外仓物流怎么做", "--json").output)
    assert 0 < data["all_words"] < data["total"]
    human = run(runner, index_dir, "query", "海外仓物流怎么做").output
    assert f"{data['total']} results ({data['all_words']} hold every word; the rest hold some of them)" in human
