"""The ``search`` command: a thin shell over ``indexer`` and ``search``.

Every command takes ``--index DIR`` (before or after the command name); the
environment's ``ZHSEARCH_INDEX`` and then ``index/`` apply when it is not
given. Bad input ends with a one-line message and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import html
import json
import re
import signal
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import click

from indexer.cluster import ClusterUnavailable
from indexer.config import Settings
from indexer.sources import SourceError
from indexer.store import IndexBusy, IndexDamaged, IndexMissing, IndexStore, ShardedUnsupported
from indexer.writer import RunRefused, delete_ids, existing_hashes, export_documents, index_paths
from search.engine import SORTS, SearchEngine, SearchRequest
from search.evaluate import EvalInputError, evaluate, load_qrels, load_queries, sample_queries
from search.query import QueryError, TooExpensive
from search.shards import open_engine

_MARK_RE = re.compile(r"<mark>(.*?)</mark>", re.S)
_EXPECTED_ERRORS = (
    QueryError,
    ClusterUnavailable,
    ShardedUnsupported,
    IndexMissing,
    IndexDamaged,
    SourceError,
    IndexBusy,
    RunRefused,
    EvalInputError,
    ValueError,
    OSError,
)


def sample_data_path() -> Path:
    """The articles shipped with the package, for the demo and the tests."""
    return Path(str(resources.files("indexer") / "data" / "sample-articles.jsonl"))


# --------------------------------------------------------------------------
# Shared options and error handling
# --------------------------------------------------------------------------


def _index_option(f):
    return click.option(
        "--index",
        "index_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Index folder (default: $ZHSEARCH_INDEX, then ./index).",
    )(f)


def _settings(ctx: click.Context, index_dir: Path | None) -> Settings:
    base: dict[str, Any] = dict(ctx.obj or {})
    if index_dir is not None:
        base["index"] = index_dir
    try:
        return Settings.load(base)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


class JsonError(click.ClickException):
    """An error of a command run with ``--json``: printed as JSON on
    stdout, where a script reads the answer, with the same exit status."""

    def __init__(self, message: str, code: str, field: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.code, self.field, self.exit_code = code, field, exit_code

    def show(self, file=None) -> None:
        error = {"code": self.code, "message": self.message, "field": self.field}
        click.echo(_json({"error": error}))


class Command(click.Command):
    """Our subcommands: errors as JSON under ``--json``, and, for commands
    taking free text (``query``), words starting with "-" are text unless
    they are one of the command's options: ``search query 亚马逊 -广告
    --limit 1`` excludes 广告 and shows one result, without ``--``."""

    def __init__(self, *args, free_text: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.free_text = free_text

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        wants_json = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
        if self.free_text:
            args = self._text_last(ctx, args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as err:
            if not wants_json:
                raise
            field = None
            if isinstance(err, click.BadParameter) and err.param is not None:
                field = err.param.name
            raise JsonError(err.format_message(), "bad_usage", field, exit_code=err.exit_code) from None

    def _text_last(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``args`` with the command's options first and every text word
        after a ``--``, in the order typed."""
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        options: list[str] = []
        text: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                text.extend(args[i + 1 :])
                break
            name = arg.split("=", 1)[0]
            if arg.startswith("-") and name in takes_value:
                options.append(arg)
                if takes_value[name] and "=" not in arg and i + 1 < len(args):
                    options.append(args[i + 1])
                    i += 1
            elif arg.startswith("-") and not arg.startswith("--") and takes_value.get(arg[:2]):
                options.append(arg)  # a short option with its value attached: -n5
            else:
                text.append(arg)
            i += 1
        return [*options, "--", *text] if text else options


def command(group: click.Group, *args, free_text: bool = False, **kwargs):
    """A subcommand with ``--index`` and friendly errors for expected failures."""

    def decorate(f):
        @functools.wraps(f)
        def wrapper(*a, index_dir=None, **kw):
            ctx = click.get_current_context()
            settings = _settings(ctx, index_dir)
            try:
                return f(settings, *a, **kw)
            except BrokenPipeError:
                # Output piped into a reader that stopped early (``| head``):
                # click ends the command quietly, as Unix tools do.
                raise
            except _EXPECTED_ERRORS as err:
                if kw.get("as_json"):
                    raise JsonError(_message(err), getattr(err, "code", "error"), getattr(err, "field", None)) from None
                raise click.ClickException(_message(err)) from None
            except click.ClickException as err:
                if kw.get("as_json") and not isinstance(err, JsonError):
                    raise JsonError(err.format_message(), "error", exit_code=err.exit_code) from None
                raise

        return group.command(*args, cls=Command, free_text=free_text, **kwargs)(_index_option(wrapper))

    return decorate


#: Characters a terminal acts on (escape sequences, bells, carriage returns,
#: C1 controls): crawled text must not reach one with them.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """Document text made safe for a terminal: controls dropped, except the
    line breaks and tabs that lay the text out."""
    return _CONTROL_RE.sub("", text)


def _json(data: Any, indent: int | None = 2) -> str:
    """JSON for stdout. ``json.dumps`` escapes C0 controls but passes C1
    controls (U+009B starts an escape sequence on some terminals) through
    as themselves; those are escaped too."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _message(err: Exception) -> str:
    if isinstance(err, TooExpensive):
        return f"query too expensive: {err.message}"
    if isinstance(err, QueryError):
        return f"bad query: {err.message}" if err.field == "q" else f"bad {err.field}: {err.message}"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"cannot write the index: {err.strerror} ({err.filename or 'index'}); the live index is unchanged"
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return str(err)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_index_option
@click.option("--userdict", type=click.Path(dir_okay=False, exists=True), default=None, help="jieba user dictionary.")
@click.option("--synonyms", type=click.Path(dir_okay=False, exists=True), default=None, help="Synonyms file.")
@click.option(
    "--ray-address",
    default=None,
    metavar="HOST:PORT",
    help="Ray cluster for a sharded index (default: ZHSEARCH_RAY_ADDRESS; unset, builds start Ray on this machine "
    "and searches read the shards in this process).",
)
@click.option(
    "--shard-replicas",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Ray actors serving each shard of a sharded index on a Ray cluster (default: ZHSEARCH_SHARD_REPLICAS, "
    "then 1).",
)
@click.option(
    "--shard-cache",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Folder on each machine of the Ray cluster where shards are written and served from copies "
    "(default: ZHSEARCH_SHARD_CACHE; unset, where a machine sees the index folder they are used in place).",
)
@click.version_option(package_name="zhsearch")
@click.pass_context
def cli(
    ctx: click.Context,
    index_dir: Path | None,
    userdict: str | None,
    synonyms: str | None,
    ray_address: str | None,
    shard_replicas: int | None,
    shard_cache: str | None,
) -> None:
    """Full-text search for Chinese articles."""
    ctx.obj = {
        "index": index_dir,
        "userdict": userdict,
        "synonyms": synonyms,
        "ray_address": ray_address,
        "shard_replicas": shard_replicas,
        "shard_cache": shard_cache,
    }


def main() -> None:
    cli(prog_name="search")


# --------------------------------------------------------------------------
# Indexing
# --------------------------------------------------------------------------


@command(cli, "index")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True, help="Index the sample articles shipped with zhsearch.")
@click.option("--rebuild", is_flag=True, help="Build a new generation from PATHS only and switch to it when complete.")
@click.option("--prune", is_flag=True, help="PATHS are a complete crawl: delete documents not in it.")
@click.option("--force", is_flag=True, help="Let --prune or --rebuild delete more than half of the live documents.")
@click.option(
    "--field",
    "field_pairs",
    multiple=True,
    metavar="DEST=SOURCE",
    help="Read our field DEST from the crawler's field SOURCE (repeatable), e.g. body=news_content.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help='TOML file with a [fields] table (DEST = "SOURCE"); --field wins over it.',
)
@click.option(
    "--site-rules", type=click.Path(dir_okay=False, exists=True), default=None, help="HTML site rules (TOML)."
)
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the summary as JSON."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (with --watch: a line per run).")
@click.option("--strict", is_flag=True, help="Exit with status 1 when any record was rejected.")
@click.option(
    "--watch",
    "watch_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Keep running: index the crawl files that land in DIR, a run per group of new files, until SIGTERM or Ctrl-C.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="With --watch: seconds between looks at DIR.",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1, max=1024),
    default=None,
    help="With --rebuild: write the new generation as N shards, built on Ray (see --ray-address).",
)
def index_cmd(
    settings: Settings,
    paths: tuple[Path, ...],
    sample: bool,
    rebuild: bool,
    prune: bool,
    force: bool,
    field_pairs: tuple[str, ...],
    config_file: str | None,
    site_rules: str | None,
    report: Path | None,
    as_json: bool,
    strict: bool,
    watch_dir: Path | None,
    poll: float,
    shards: int | None,
) -> None:
    """Add, update and delete articles from crawl output: JSON Lines (.jsonl
    .jl .ndjson, also .gz .bz2 .xz; - for standard input), JSON arrays
    (.json), CSV/TSV, Excel (.xlsx), web archives (.warc .warc.gz .arc.gz),
    HTML pages, or folders of them.

    Records are upserted by id; unchanged ones are skipped; a record
    {"id": ..., "deleted": true} deletes. Crawlers' field names (content,
    pub_time, 正文, 发布时间, link …) are understood; --field maps others.
    HTML pages go through main-content extraction; the same article under
    two URLs is indexed once. Bad records are reported with their location
    and skipped. --prune and --rebuild refuse when some input could not be
    read, or when they would delete more than half of the index (--force).
    --watch DIR indexes files as they land in DIR (write them under a .part
    name and rename them when complete).
    """
    from indexer.mapping import load_field_config, parse_field_options
    from indexer.sources import find_files, total_bytes

    targets = [str(p) for p in paths]
    if sample:
        targets.append(str(sample_data_path()))
    if watch_dir is not None and (targets or rebuild or prune or report or strict or shards):
        raise click.UsageError(
            "--watch DIR takes no PATH, --sample, --rebuild, --prune, --report, --strict or --shards"
        )
    if shards is not None and not rebuild:
        raise click.UsageError("--shards builds a new generation: add --rebuild")
    if not targets and watch_dir is None:
        raise click.UsageError("give at least one PATH (or --sample, or --watch DIR)")
    if site_rules:
        settings = settings.replace(site_rules=site_rules)
    if config_file or field_pairs:
        field_map = load_field_config(config_file) if config_file else {}
        field_map.update(parse_field_options(field_pairs))
        settings = settings.replace(field_map=field_map)
    if watch_dir is not None:
        _watch(settings, watch_dir, poll, as_json)
        return
    found = find_files(targets)
    options = {"rebuild": rebuild, "prune": prune, "force": force, "discovery": found, "shards": shards}
    if sys.stderr.isatty() and not as_json:
        length = total_bytes(found.files)
        with click.progressbar(length=length, label="indexing", file=sys.stderr, show_eta=True) as bar:
            summary = index_paths(settings, targets, on_bytes=bar.update, **options)
    else:
        summary = index_paths(settings, targets, **options)
    figures = {"index": str(settings.index), **summary.to_dict()}
    if report:
        report.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
    else:
        _print_summary(settings, summary)
    if strict and summary.rejected:
        sys.exit(1)


def _watch(settings: Settings, folder: Path, poll: float, as_json: bool) -> None:
    """``index --watch``: runs until SIGTERM or SIGINT, then exits 0."""
    from indexer.watch import Stopped, Watcher

    watcher = Watcher(settings, folder, poll=poll)

    def stop(_signum, _frame) -> None:
        watcher.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    settings.segmentation.segmenter()  # the dictionary, once for every run
    before = len(watcher.indexed)
    if as_json:
        click.echo(_json({"watching": str(folder), "index": str(settings.index), "indexed_before": before}, None))
    else:
        click.echo(
            f"watching {folder} for crawl files (every {poll:g} s) into {settings.index}; "
            f"{before} file(s) indexed before, not read again",
            err=True,
        )

    def on_run(run) -> None:
        if as_json:
            click.echo(_json({"index": str(settings.index), "watched": run.files, **run.summary.to_dict()}, None))
            return
        shown = ", ".join(run.files[:3]) + (f" and {len(run.files) - 3} more" if len(run.files) > 3 else "")
        _print_summary(settings, run.summary, label=f"{folder}: {shown}")

    def on_unknown(name: str) -> None:
        click.echo(f"ignored {name}: not of a format search index reads", err=True)

    def on_error(err: BaseException) -> None:
        if not isinstance(err, _EXPECTED_ERRORS):
            raise err
        if as_json:
            error = {"code": getattr(err, "code", "error"), "message": _message(err), "field": None}
            click.echo(_json({"error": error}, None))
        else:
            click.echo(f"error: {_message(err)}; trying again in {poll:g} s", err=True)

    interrupted = False
    try:
        watcher.watch(on_run, on_unknown, on_error)
    except Stopped:
        interrupted = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupted:
        click.echo("stopped during a run: nothing of it was committed; its files are read at the next start", err=True)
    else:
        click.echo("stopped", err=True)


def _print_summary(settings: Settings, summary, label: str | None = None) -> None:
    pruned = f", {summary.pruned} pruned" if summary.pruned else ""
    click.echo(
        f"{label or settings.index}: {summary.added} added, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.deleted} deleted{pruned}, {len(summary.rejected)} rejected "
        f"({summary.records} records from {summary.files} files in {summary.seconds:.1f} s; "
        f"{summary.documents} documents in the index)"
    )
    if summary.repaired:
        click.echo(f"CURRENT was missing: {summary.repaired}, the newest complete generation, is live again", err=True)
    if summary.rebuilt:
        click.echo(f"rebuilt as {summary.rebuilt}, now live")
    if summary.pages:
        encodings = ", ".join(f"{n} {enc}" for enc, n in summary.encodings.most_common())
        click.echo(
            f"pages: {summary.pages} read ({encodings or 'given as text'}), {summary.extracted} extracted, "
            f"{len(summary.skipped)} skipped, {len(summary.duplicates)} duplicates merged"
        )
    if summary.records_skipped or summary.revisits:
        skipped = ", ".join(f"{n} {why}" for why, n in summary.records_skipped.most_common())
        click.echo(f"archive records: {summary.revisits} revisits (kept as seen); skipped: {skipped or 'none'}")
    if summary.unknown_formats:
        unknown = ", ".join(f"{n} {ext}" for ext, n in summary.unknown_formats.most_common())
        click.echo(f"files of unknown formats, not read: {unknown}", err=True)
    for name, location in summary.unmapped_fields.items():
        click.echo(
            f"field {name!r} holds long text that no field takes (first at {location}); "
            f"to index it, add --field body={name}",
            err=True,
        )
    for skipped in summary.skipped:
        click.echo(f"skipped {skipped}", err=True)
    _more(summary.skipped, "skipped")
    for dup in summary.duplicates:
        click.echo(f"duplicate {dup.location}: {dup.id} is {dup.duplicate_of}", err=True)
    _more(summary.duplicates, "duplicates")
    for rejection in summary.rejected:
        click.echo(f"rejected {rejection}", err=True)
    _more(summary.rejected, "rejected")
    rejected = {r.location for r in summary.rejected}
    for unreadable in summary.unreadable:
        if unreadable.location not in rejected:
            click.echo(f"unreadable {unreadable}", err=True)


def _more(kept, what: str) -> None:
    if kept.more:
        click.echo(f"… and {kept.more} more {what} (only the first {len(kept) - kept.more} are listed)", err=True)


@command(cli, "delete")
@click.argument("ids", nargs=-1, required=True)
def delete_cmd(settings: Settings, ids: tuple[str, ...]) -> None:
    """Delete documents by id."""
    missing = delete_ids(settings, ids)
    deleted = len(ids) - len(missing)
    click.echo(f"{deleted} deleted")
    if missing:
        raise click.ClickException("not in the index: " + ", ".join(missing))


@command(cli, "export")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write (default: stdout)."
)
def export_cmd(settings: Settings, out: Path | None) -> None:
    """Write every stored document as JSON Lines (the input format)."""
    with click.open_file(str(out) if out else "-", "w", encoding="utf-8") as stream:
        count = 0
        for record in export_documents(settings):
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    if out:
        click.echo(f"{count} documents written to {out}", err=True)


# --------------------------------------------------------------------------
# Searching
# --------------------------------------------------------------------------


def _date(ctx, param, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


@command(cli, "query", free_text=True)
@click.argument("text", nargs=-1, required=True)
@click.option("--limit", "-n", type=int, default=None, help="Results per page (default 10).")
@click.option("--page", "-p", type=int, default=1, show_default=True)
@click.option("--sort", type=click.Choice(SORTS), default="relevance", show_default=True)
@click.option("--tag", "tags", multiple=True, help="Only articles with this tag (repeatable).")
@click.option("--source", "sources", multiple=True, help="Only articles from this source (repeatable).")
@click.option("--site", "sites", multiple=True, help="Only articles from this site: a host or top folder (repeatable).")
@click.option("--since", callback=_date, help="Published on or after YYYY-MM-DD.")
@click.option("--until", callback=_date, help="Published on or before YYYY-MM-DD.")
@click.option("--recent", is_flag=True, help="Favour newer articles (a date decay blended into relevance).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def query_cmd(
    settings: Settings,
    text: tuple[str, ...],
    limit: int | None,
    page: int,
    sort: str,
    tags: tuple[str, ...],
    sources: tuple[str, ...],
    sites: tuple[str, ...],
    since: dt.date | None,
    until: dt.date | None,
    recent: bool,
    as_json: bool,
) -> None:
    """Search the index. Words must all match; "quoted phrases", -exclusions,
    OR, title:, author:, tag:, source:, site: and date:2020-01..2020-06 work too."""
    engine = open_engine(settings)
    request = SearchRequest(
        q=" ".join(text),
        page=page,
        size=limit,
        sort=sort,
        tags=tags,
        sources=sources,
        sites=sites,
        since=since,
        until=until,
        recent=recent,
    )
    result = engine.search(request)
    if as_json:
        click.echo(_json(result.to_dict()))
        return
    first = (result.page - 1) * result.size + 1
    if result.corrected:
        typed, searched = _printable(result.corrected["from"]), _printable(result.corrected["to"])
        click.echo(f"Showing results for {searched} ({typed} found nothing)")
    if result.suggestion:
        click.echo(f"Did you mean: {_printable(result.suggestion)}")
    if result.total == 0:
        click.echo(f"No results for {result.query!r}.")
        return
    note = " (no article has every word; showing articles with any of them)" if result.fallback else ""
    if result.all_words is not None and not result.fallback:
        note += f" ({result.all_words} hold every word; the rest hold some of them)"
    if result.partial:
        note += " (partial: the time budget ran out; these are the best of the matches found by then)"
    last = first + len(result.hits) - 1
    click.echo(
        f"{result.total} results{note}, {first}-{last} shown, in {result.took_ms:.1f} ms"
        if result.hits
        else f"{result.total} results{note}; page {result.page} is past the end"
    )
    for n, hit in enumerate(result.hits, start=first):
        click.echo()
        click.echo(f"{n:>3}. " + _terminal(hit.title_html or "(untitled)", bold=True))
        meta = " · ".join(
            x for x in (hit.source, hit.published, hit.author, ", ".join(hit.tags) if hit.tags else None) if x
        )
        where = hit.display_url or hit.site
        if where:
            click.echo("     " + click.style(_printable(where), fg="green"))
        click.echo("     " + click.style(_printable(hit.url or hit.id), fg="blue"))
        if meta:
            click.echo("     " + click.style(_printable(meta), dim=True))
        if hit.snippet_html:
            click.echo("     " + _terminal(hit.snippet_html))


def _terminal(fragment: str, bold: bool = False) -> str:
    """Snippet HTML for a terminal: marks in colour (dropped when piped,
    as click.echo strips styles), entities decoded, controls dropped."""
    parts = []
    pos = 0
    for m in _MARK_RE.finditer(fragment):
        parts.append(click.style(_printable(html.unescape(fragment[pos : m.start()])), bold=bold))
        parts.append(click.style(_printable(html.unescape(m.group(1))), fg="red", bold=True))
        pos = m.end()
    parts.append(click.style(_printable(html.unescape(fragment[pos:])), bold=bold))
    return "".join(parts)


@command(cli, "show")
@click.argument("doc_id")
@click.option("--json", "as_json", is_flag=True, help="Print the document as JSON.")
def show_cmd(settings: Settings, doc_id: str, as_json: bool) -> None:
    """Show one stored document with all its fields."""
    doc = open_engine(settings).document(doc_id)
    if doc is None:
        message = f"no document with id {doc_id!r}"
        raise JsonError(message, "not_found") if as_json else click.ClickException(message)
    if as_json:
        click.echo(_json(doc))
        return
    for key in ("id", "url", "title", "published", "source", "author"):
        click.echo(f"{key + ':':<11}{_printable(str(doc.get(key))) if doc.get(key) is not None else ''}")
    click.echo(f"{'tags:':<11}{_printable(', '.join(doc['tags']))}")
    click.echo()
    click.echo(_printable(doc.get("body") or ""))


@command(cli, "stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats_cmd(settings: Settings, as_json: bool) -> None:
    """Documents, last update and size on disk."""
    stats = open_engine(settings).stats()
    if as_json:
        click.echo(_json(stats))
        return
    click.echo(f"index:        {stats['index']} ({stats['generation']})")
    click.echo(f"documents:    {stats['documents']}")
    click.echo(f"last update:  {stats['last_update']}")
    click.echo(f"size on disk: {stats['size_bytes'] / 1_048_576:.1f} MiB")


@command(cli, "serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="gunicorn workers (default: one per core).")
@click.option(
    "--timeout",
    type=click.IntRange(2, 3600),
    default=30,
    show_default=True,
    help="Seconds a worker may spend on one request before it answers 503 and is replaced.",
)
@click.option("--dev", is_flag=True, help="Flask's development server with the reloader instead of gunicorn.")
def serve_cmd(settings: Settings, host: str, port: int, workers: int | None, timeout: int, dev: bool) -> None:
    """Serve the search page and the JSON API."""
    from web.server import default_workers, serve, serve_dev

    store_ok = IndexStore(settings.index).exists()
    if not store_ok:
        click.echo(f"warning: no index in {settings.index} yet; pages answer 503 until 'search index' runs", err=True)
    if dev:
        serve_dev(settings, host, port)
        return
    click.echo(
        f"serving {settings.index} on http://{host}:{port}/ with {workers or default_workers()} workers", err=True
    )
    serve(settings, host, port, workers, timeout=timeout)


@command(cli, "check")
@click.option("--clean", is_flag=True, help="Remove leftovers of interrupted runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_cmd(settings: Settings, clean: bool, as_json: bool) -> None:
    """Verify the index: open every segment, read every document, find
    leftovers of interrupted runs. Exits 1 on damage."""
    from indexer.check import check_index

    report = check_index(settings.index, clean=clean, lock_timeout=settings.lock_timeout, cluster=settings.ray_address)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(
            f"{report.index} ({report.generation}): {report.documents} documents in {report.segments} segments, "
            f"{report.terms} terms, {report.deleted} deleted awaiting merge"
        )
        if report.repaired:
            click.echo(f"CURRENT was missing: {report.repaired}, the newest complete generation, is live again")
        for name in report.leftovers:
            click.echo(f"leftover: {name}" + (" (removed)" if name in report.removed else ""))
        for problem in report.damage:
            click.echo(f"DAMAGE: {problem}", err=True)
        click.echo("ok" if report.ok else "damaged")
    if not report.ok:
        sys.exit(1)


@command(cli, "bench")
@click.option("--corpus", required=True, type=click.Path(exists=True, dir_okay=False), help="JSON Lines corpus.")
@click.option("--queries", "queries_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to build (default: a temporary folder).",
)
@click.option(
    "--questions",
    "questions_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Long questions (JSON Lines, as --queries) to time apart.",
)
@click.option("--sample", type=int, default=None, help="Time this many questions drawn at random.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: ours, fts5, ratios.")
def bench_cmd(
    settings: Settings,
    corpus: str,
    queries_path: str,
    work: Path | None,
    questions_path: str | None,
    sample: int | None,
    seed: int,
    as_json: bool,
) -> None:
    """Build and query our index and an SQLite FTS5 + jieba reference over
    the same corpus and queries; report speed, size, memory and the ratios."""
    from search.bench import run_bench
    from search.evaluate import load_queries, sample_queries

    questions = None
    if questions_path:
        questions = [q.query for q in sample_queries(load_queries(questions_path), sample, seed)]
    with tempfile.TemporaryDirectory(prefix="zhsearch-bench-") as tmp:
        target = work or Path(tmp)
        target.mkdir(parents=True, exist_ok=True)
        figures = run_bench(corpus, queries_path, target, settings, questions=questions)
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
        return
    click.echo(
        f"{figures['corpus']}: {figures['ours']['documents']} documents, {figures['ours']['input_mb']} MB, {figures['queries']} queries"
    )
    click.echo(f"{'':<22}{'ours':>12}{'fts5':>12}")
    rows = [
        ("build s", "build_seconds"),
        ("MB/s", "mb_per_second"),
        ("index MB", "index_mb"),
        ("peak memory MB", "peak_memory_mb"),
        ("querying peak MB", "query_peak_memory_mb"),
    ]
    for label, key in rows:
        click.echo(f"{label:<22}{figures['ours'][key]:>12}{figures['fts5'][key]:>12}")
    timed = [("query ms", "query_ms"), ("with snippets ms", "query_ms_snippets")]
    if figures["questions"]:
        timed.append(("question ms", "question_ms"))
    for label, key in timed:
        for pct in ("p50", "p95", "p99"):
            click.echo(f"{label + ' ' + pct:<22}{figures['ours'][key][pct]:>12}{figures['fts5'][key][pct]:>12}")
    click.echo("ratios: " + ", ".join(f"{k} {v}" for k, v in figures["ratios"].items()))


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


@command(cli, "eval")
@click.option(
    "--corpus", type=click.Path(exists=True, dir_okay=True, path_type=Path), help="JSON Lines corpus to index."
)
@click.option("--queries", "queries_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--qrels", "qrels_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample", type=int, default=None, help="Evaluate this many queries drawn at random.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def eval_cmd(
    settings: Settings,
    corpus: Path | None,
    queries_path: Path,
    qrels_path: Path,
    sample: int | None,
    seed: int,
    as_json: bool,
) -> None:
    """Score the ranking against judged queries (MRR@10, Recall, nDCG@10).

    With --corpus the corpus is indexed into a temporary index first;
    without it the index given by --index is used as it is.
    """
    queries = sample_queries(load_queries(queries_path), sample, seed)
    qrels = load_qrels(qrels_path)
    with tempfile.TemporaryDirectory(prefix="zhsearch-eval-") as tmp:
        index_seconds = 0.0
        if corpus is not None:
            settings = settings.replace(index=Path(tmp) / "index")
            summary = index_paths(settings, [str(corpus)])
            index_seconds = summary.seconds
        engine = SearchEngine(settings)
        ids = set(existing_hashes(engine.store.open()))
        figures = evaluate(engine, queries, qrels, ids)
        figures["index_seconds"] = round(index_seconds, 2)
        figures["documents"] = len(ids)
        engine.close()
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False))
        return
    click.echo(f"queries      {figures['queries']}  (documents {figures['documents']})")
    for key in ("mrr@10", "recall@10", "recall@100", "ndcg@10"):
        click.echo(f"{key:<12} {figures[key]:.4f}")
    click.echo(f"index        {figures['index_seconds']:.1f} s")
    click.echo(f"query p50    {figures['query_ms_p50']:.1f} ms, p95 {figures['query_ms_p95']:.1f} ms")


if __name__ == "__main__":
    main()
