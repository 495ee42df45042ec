"""What the two peers share: their command line, the jobs file and their one-line report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class PeerArgs:
    """A peer's settings: API root, the jobs, C workers, poll interval (seconds, scaled).

    `connections`: the pool's size, every connection kept alive (None: the
    peer's own default). `discard`: images are read and dropped, not written.
    `cached_sockets`: the pool opens its connections through the runner's
    network backend (runner/backends/netstream.py), as the runner's do.
    `submits_in_flight`: at most that many submits on the wire at once (the
    runner's `max_submits_in_flight`; None: only C limits them).
    """

    base_url: str
    api_key: str
    model: str
    jobs: tuple[dict[str, Any], ...]
    concurrency: int
    interval: float
    out: Path
    retry_429: bool
    connections: int | None = None
    discard: bool = False
    cached_sockets: bool = False
    submits_in_flight: int | None = None


@dataclass(slots=True)
class PeerReport:
    """What a peer did. Wall-clock times are epoch seconds."""

    started: float = 0.0
    finished: float = 0.0
    completed: int = 0
    failed: int = 0
    seen_429: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def print(self) -> None:
        """One JSON line on stdout."""
        record = asdict(self)
        record["errors"] = dict(self.errors)
        sys.stdout.write(json.dumps(record) + "\n")


def parse_args(argv: list[str] | None = None) -> PeerArgs:
    """Read the command line (the API key comes from SEGMIND_API_KEY)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True, help="API root, e.g. http://127.0.0.1:8765")
    parser.add_argument("--jobs", required=True, type=Path, help="JSON file of the requests")
    parser.add_argument("--concurrency", type=int, required=True, help="workers (C)")
    parser.add_argument("--interval", type=float, required=True, help="poll interval, seconds")
    parser.add_argument("--out", type=Path, required=True, help="folder for the images")
    parser.add_argument("--retry-429", action="store_true", help="wait an interval, try again")
    parser.add_argument(
        "--connections", type=int, help="pool size, all kept alive (httpx peer only)"
    )
    parser.add_argument(
        "--discard", action="store_true", help="read each image, write none (httpx peer only)"
    )
    parser.add_argument(
        "--cached-sockets",
        action="store_true",
        help="the runner's network backend under the pool (httpx peer only)",
    )
    parser.add_argument(
        "--submits-in-flight", type=int, help="submits on the wire at once (httpx peer only)"
    )
    args = parser.parse_args(argv)
    spec = json.loads(args.jobs.read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    return PeerArgs(
        base_url=args.base_url.rstrip("/"),
        api_key=os.environ.get("SEGMIND_API_KEY", ""),
        model=spec["model"],
        jobs=tuple(spec["jobs"]),
        concurrency=args.concurrency,
        interval=args.interval,
        out=args.out,
        retry_429=args.retry_429,
        connections=args.connections,
        discard=args.discard,
        cached_sockets=args.cached_sockets,
        submits_in_flight=args.submits_in_flight,
    )


def output_urls(body: dict[str, Any]) -> list[str]:
    """The image URLs of a result body (`output` is a URL or a list of them)."""
    output = body.get("output")
    if isinstance(output, str):
        return [output]
    if isinstance(output, list):
        return [u for u in output if isinstance(u, str)]
    return [i["url"] for i in body.get("images", []) if isinstance(i, dict) and "url" in i]


def image_name(index: int, image: int, params: dict[str, Any]) -> str:
    """The file name of image `image` of job `index`."""
    ext = {"jpeg": "jpg"}.get(str(params.get("output_format")), str(params.get("output_format")))
    return f"job{index:06d}-{image}.{ext}"
