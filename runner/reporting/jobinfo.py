"""What reports say about a job: its facts and a readable label, from wherever they are known.

The ledger holds a job's key, prompt id, state and reason, but not its
params. Those come, in order of preference, from the run's own jobs (a
lookup the run passes in), from a sidecar (for completed jobs), or from
``OUT/.gallery/jobs.json``: the facts of jobs that have no sidecar
(failed, expired, not run), remembered by the last run that knew them, so
`runner gallery OUT` can place a failed job in its cell without the
manifest. A job key is a hash of the job's identity, so a remembered fact
never goes stale; the file is only pruned to the jobs still without images.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from runner.errors import StoreError
from runner.jobs import Job
from runner.params import DEFAULT_PRICES
from runner.scheduling.credits import estimate_micros
from runner.store import JobRow, Sidecar, read_sidecar, sidecar_path, write_atomic

REPORTS_DIR: Final = ".gallery"
"""Hidden folder under OUT for thumbnails and remembered job facts (verify skips it)."""

FACTS_NAME: Final = "jobs.json"
_FACTS_VERSION: Final = 1
_LABEL_PROMPT_CHARS: Final = 40

RunJobs = Mapping[str, Job]
"""The run's jobs by key, in expansion order: ``{job.key: job for job in jobs}``.

Every job of the manifest (or of the shard) that the run was asked to do.
Reports given it cover exactly these jobs: those the ledger has not seen
(a run stopped before reaching them) count as planned, and ledger rows of
jobs no longer in the manifest are left out.
"""

Prices = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class JobFacts:
    """The facts of one job that reports show (no secrets, no image bytes).

    `params` are the request params but the prompt, in API order; `image`
    describes an input image (a path, URL or ``data URI sha256:...``), if any.
    """

    key: str
    index: int
    prompt_id: str
    prompt: str
    params: tuple[tuple[str, str | int], ...]
    vars: tuple[tuple[str, str], ...] = ()
    sweep: tuple[tuple[str, str | int], ...] = ()
    repeat: int = 0
    model: str = ""
    endpoint: str = ""
    image: str | None = None

    @property
    def key8(self) -> str:
        """The first 8 hex digits of the key, as in file names."""
        return key8(self.key)

    def label(self) -> str:
        """A short readable name: its vars and sweep values, repeat, and key8.

        E.g. ``color=red surface=white marble aspect_ratio=1:1 #1 [43e429f7]``;
        the start of the prompt when nothing varies.
        """
        parts = [f"{name}={value}" for name, value in (*self.vars, *self.sweep)]
        if not parts:
            text = " ".join(self.prompt.split())
            if len(text) > _LABEL_PROMPT_CHARS:
                text = text[: _LABEL_PROMPT_CHARS - 1].rstrip() + "…"
            parts.append(text)
        if self.repeat:
            parts.append(f"#{self.repeat}")
        parts.append(f"[{self.key8}]")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A JSON object of the facts (as stored in jobs.json)."""
        return {
            "key": self.key,
            "index": self.index,
            "prompt_id": self.prompt_id,
            "prompt": self.prompt,
            "params": dict(self.params),
            "vars": dict(self.vars),
            "sweep": dict(self.sweep),
            "repeat": self.repeat,
            "model": self.model,
            "endpoint": self.endpoint,
            "image": self.image,
        }

    @classmethod
    def from_json(cls, data: Any) -> JobFacts:
        """Read `to_json`'s form back. Raises ValueError if it is not that form."""
        try:
            return cls(
                key=_text(data["key"]),
                index=int(data["index"]),
                prompt_id=_text(data["prompt_id"]),
                prompt=_text(data["prompt"]),
                params=_pairs(data["params"]),
                vars=tuple((_text(k), _text(v)) for k, v in dict(data["vars"]).items()),
                sweep=_pairs(data["sweep"]),
                repeat=int(data["repeat"]),
                model=_text(data["model"]),
                endpoint=_text(data["endpoint"]),
                image=None if data["image"] is None else _text(data["image"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"not a job record ({err!r})") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _pairs(value: Any) -> tuple[tuple[str, str | int], ...]:
    pairs: list[tuple[str, str | int]] = []
    for name, item in dict(value).items():
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise TypeError(f"{name}: expected text or a whole number")
        pairs.append((_text(name), item))
    return tuple(pairs)


def key8(key: str) -> str:
    """The first 8 hex digits of a scheme-tagged job key (``k1:<hex>``)."""
    return key.split(":", 1)[-1][:8]


def facts_of_job(job: Job) -> JobFacts:
    """The facts of a manifest's job."""
    params = job.request.params()
    params.pop("prompt")
    return JobFacts(
        key=job.key,
        index=job.index,
        prompt_id=job.prompt_id,
        prompt=job.request.prompt,
        params=tuple(params.items()),
        vars=job.vars,
        sweep=job.sweep,
        repeat=job.repeat,
        model=job.model,
        endpoint=job.endpoint,
        image=job.request.image.describe() if job.request.image else None,
    )


_WORDS: dict[str, str] = {}
_WORDS_KEPT: Final = 1024
"""The most texts `_word` remembers; then it starts again. Not sys.intern: a text of
one job (a var value) would grow the process's table of interned strings, whose
resizes (megabytes at once) would land in whichever report happens to be running."""


def _word(value: str) -> str:
    """One copy of a short text many sidecars repeat (a prompt id, a param or var value):
    a page holds 10,000 entries' facts, each sidecar read would otherwise bring its own.
    """
    word = _WORDS.get(value)
    if word is None:
        if len(_WORDS) >= _WORDS_KEPT:
            _WORDS.clear()
        word = _WORDS[value] = value
    return word


def _word_or_number(value: str | int) -> str | int:
    return _word(value) if isinstance(value, str) else value


@functools.lru_cache(maxsize=256)
def _params(
    mode: str, aspect_ratio: str, resolution: str, n: int, output_format: str
) -> tuple[tuple[str, str | int], ...]:
    """The params of a sidecar's job, one tuple shared by every job with the same ones."""
    return (
        ("mode", _word(mode)),
        ("aspect_ratio", _word(aspect_ratio)),
        ("resolution", _word(resolution)),
        ("n", n),
        ("output_format", _word(output_format)),
    )


def facts_of_sidecar(sidecar: Sidecar) -> JobFacts:
    """The facts of the job a sidecar describes (texts that repeat between jobs shared)."""
    p = sidecar.params
    image = None
    if p.image is not None:
        image = p.image.source or f"data URI sha256:{p.image.sha256[:12]}"
    return JobFacts(
        key=sidecar.key,
        index=sidecar.job_index,
        prompt_id=_word(sidecar.prompt_id),
        prompt=sidecar.prompt,
        params=_params(p.mode, p.aspect_ratio, p.resolution, p.n, p.output_format),
        vars=tuple((_word(name), _word(value)) for name, value in sidecar.vars.items()),
        sweep=tuple((_word(name), _word_or_number(v)) for name, v in sidecar.sweep.items()),
        repeat=sidecar.repeat,
        model=_word(sidecar.model),
        endpoint=_word(sidecar.endpoint),
        image=image,
    )


def facts_path(out: Path) -> Path:
    """Where a folder's remembered job facts live."""
    return out / REPORTS_DIR / FACTS_NAME


def _read_remembered(out: Path) -> dict[str, JobFacts]:
    """The remembered facts by key; an unreadable file counts as empty (it is a cache)."""
    try:
        doc = json.loads(facts_path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, JobFacts] = {}
    if not isinstance(doc, dict) or doc.get("version") != _FACTS_VERSION:
        return found
    for item in doc.get("jobs", []):
        try:
            facts = JobFacts.from_json(item)
        except ValueError:
            continue
        found[facts.key] = facts
    return found


class JobCatalog:
    """Facts of a folder's jobs by key: the run's lookup, then sidecars, then jobs.json."""

    def __init__(self, out: Path, jobs: RunJobs | None = None) -> None:
        self._out = out
        self._jobs = jobs
        self._remembered: dict[str, JobFacts] | None = None

    def _recall(self) -> dict[str, JobFacts]:
        if self._remembered is None:
            self._remembered = _read_remembered(self._out)
        return self._remembered

    def get(self, row: JobRow) -> JobFacts | None:
        """The facts of `row`'s job, or None when nothing says them."""
        if self._jobs is not None:
            job = self._jobs.get(row.key)
            if job is not None:
                return facts_of_job(job)
        if row.files:
            try:
                return facts_of_sidecar(read_sidecar(sidecar_path(self._out / row.files[0])))
            except (ValueError, StoreError):
                pass
        return self._recall().get(row.key)

    def remember(self, rows: Iterable[JobRow]) -> None:
        """Keep the facts of `rows` without images (failed, expired, not run) in jobs.json.

        Pass every row of the ledger: the file is rewritten to hold exactly
        those of them that are not completed and whose facts are known.
        Raises StoreError on a disk fault.
        """
        kept: list[dict[str, Any]] = []
        for row in rows:
            if row.state == "completed":
                continue
            facts = self.get(row)
            if facts is not None:
                kept.append(facts.to_json())
        doc = {"version": _FACTS_VERSION, "jobs": kept}
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"
        path = facts_path(self._out)
        try:
            if path.read_text(encoding="utf-8") == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        if kept or path.exists():
            write_atomic(path, text.encode("utf-8"))


def run_rows(
    rows: Iterable[JobRow], jobs: RunJobs | None, *, prices: Prices = DEFAULT_PRICES
) -> Iterator[JobRow]:
    """The rows a report covers: every ledger row, or with `jobs`, exactly the run's jobs.

    Lazy: without `jobs` the rows pass through one by one (a report over a
    big folder never holds them all). With `jobs`, the result follows their
    order (the run's rows are looked up by key); a job the ledger has not
    seen gets a `planned` row (estimate from `prices`, µ$; `updated_at` 0).
    """
    if jobs is None:
        yield from rows
        return
    found = {row.key: row for row in rows if row.key in jobs}
    for key, job in jobs.items():
        row = found.get(key)
        if row is None:
            estimate = estimate_micros(job, prices)
            row = JobRow(
                key, job.index, job.prompt_id, "planned", None, None, None, estimate,
                None, None, 0, 0, (), 0.0,
            )  # fmt: skip
        yield row
