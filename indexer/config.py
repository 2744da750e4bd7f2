"""One configuration object for the whole service.

Values come from explicit overrides (CLI flags), then ``ZHSEARCH_*``
environment variables, then the defaults below, in that order, so that an
operator can set the index once in the environment and still point a single
command elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "ZHSEARCH_"


@dataclass(frozen=True)
class Settings:
    """Everything a command or the web app needs to know about its index."""

    #: Folder of the index (it holds the index generations).
    index: Path = Path("index")
    #: jieba user dictionary for domain words (one word per line, optional
    #: frequency and part of speech, as jieba's own format).
    userdict: str | None = None
    #: Segmenter: "rjieba" (jieba-rs, same dictionary and results, much
    #: faster) or "jieba" (the reference).
    segmenter: str = "rjieba"
    #: Query-time synonyms file (one group a line: "亚马逊, Amazon").
    synonyms: str | None = None
    #: Site rules for HTML extraction (TOML; see indexer/siterules.py).
    site_rules: str | None = None
    #: Results per page when the caller does not say.
    page_size: int = 10
    #: The largest page a caller may ask for.
    max_page_size: int = 100
    #: Characters in a snippet (the window around the densest matches).
    snippet_chars: int = 140
    #: Milliseconds of work a search may take before it answers with what
    #: it has found so far (marked partial); 0 for no limit.
    query_budget_ms: int = 1500
    #: Memory, in MB, for the postings of an index build (shared by its
    #: worker processes) before they are spilled to disk and merged:
    #: spilling makes a build about a fifth slower.
    writer_memory_mb: int = 1024
    #: Seconds an indexing run waits for another one to finish.
    lock_timeout: int = 60
    #: Processes that build a new index (or generation) in parallel.
    index_procs: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    #: The Ray cluster a sharded index is built and served on
    #: (``host:port`` of its head); unset: an embedded one on 127.0.0.1,
    #: for the length of the command.
    ray_address: str | None = None
    #: Ray actors serving each shard of a sharded index (with a Ray
    #: cluster): a request goes on to another replica when one is lost.
    shard_replicas: int = 1
    #: A folder on each machine of a Ray cluster for the shards written and
    #: served there (say, a local disk in front of a shared one): shard
    #: tasks write in it and the command copies their shards in, shard
    #: actors serve copies in it. Unset: they work in the index folder
    #: where their machine sees it, and copy only where it does not.
    shard_cache: str | None = None
    #: Our field name -> the crawler's, for records whose names no built-in
    #: alias knows (``--field body=news_content``, or a ``[fields]`` table
    #: in the TOML file ``--config`` names).
    field_map: Mapping[str, str] = field(default_factory=dict)
    #: Extra, free-form options (kept so unknown ZHSEARCH_* values are visible).
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from overrides, then the environment, then defaults.

        ``None`` in ``overrides`` means "not given" (an unset CLI flag).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in ("extra", "field_map"):
                continue
            env_value = environ.get(ENV_PREFIX + f.name.upper())
            if env_value not in (None, ""):
                values[f.name] = _coerce(f.name, f.type, env_value)
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = _coerce(key, None, value)
        return cls(**values)

    @property
    def segmentation(self):
        from indexer.analysis import Segmentation

        return Segmentation(userdict=self.userdict or None, engine=self.segmenter)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


#: Whole-number settings for which 0 means "no limit".
_ZERO_MEANS_NONE = ("query_budget_ms",)


def _coerce(name: str, declared: Any, value: Any) -> Any:
    spec = Settings.__dataclass_fields__[name]
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
    if name == "index":
        return Path(value)
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes", "on"} if isinstance(value, str) else bool(value)
    if isinstance(default, int):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a whole number, not {value!r}") from None
        if number < 0 or (number == 0 and name not in _ZERO_MEANS_NONE):
            raise ValueError(f"{name} must be positive, not {number}")
        return number
    return value
