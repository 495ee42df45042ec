"""A plain asyncio + httpx batch script: a semaphore of C, a fixed poll interval.

What a user writes in an afternoon: submit, sleep an interval, poll, fetch
the result, download; on a 429 wait an interval and try again (with
`--retry-429`; without it the job fails). No rate limit of its own.
With `--discard --connections N --interval 0` it is the floor of the scale
scenario: the runner's four calls a job (submit, status, result, download)
through one httpx.AsyncClient with the runner's pool, nothing written.
Run: python -m benchmarks.peers.httpx_peer --base-url URL --jobs FILE ...
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from benchmarks.peers.common import PeerArgs, PeerReport, image_name, output_urls, parse_args

_MAX_429_TRIES = 10_000  # a script would loop forever; this one gives up eventually


class _Gave(Exception):
    """The job ends failed (FAILED, or too many 429s)."""


async def _call(
    client: httpx.AsyncClient, method: str, url: str, args: PeerArgs, report: PeerReport, **kw: Any
) -> httpx.Response:
    for _ in range(_MAX_429_TRIES):
        response = await client.request(method, url, **kw)
        if response.status_code != 429:
            return response
        report.seen_429 += 1
        if not args.retry_429:
            response.raise_for_status()
        await asyncio.sleep(args.interval)
    raise _Gave("too many 429s")


async def _one(
    index: int,
    params: dict[str, Any],
    *,
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    wire: asyncio.Semaphore,
    args: PeerArgs,
    report: PeerReport,
) -> None:
    async with gate:
        async with wire:
            submit = await _call(
                client, "POST", f"{args.base_url}/v2/{args.model}", args, report, json=params
            )
        submit.raise_for_status()
        job = submit.json()
        while True:
            await asyncio.sleep(args.interval)
            answer = await _call(client, "GET", job["status_url"], args, report)
            state = answer.json().get("status")
            if state == "COMPLETED":
                break
            if state == "FAILED":
                raise _Gave("FAILED")
            answer.raise_for_status()
        result = await _call(client, "GET", job["response_url"], args, report)
        result.raise_for_status()
        for i, url in enumerate(output_urls(result.json())):
            image = await client.get(url)
            image.raise_for_status()
            if not args.discard:
                (args.out / image_name(index, i, params)).write_bytes(image.content)


async def run(args: PeerArgs) -> PeerReport:
    """Run every job; count what happened."""
    report = PeerReport()
    gate = asyncio.Semaphore(args.concurrency)
    wire = asyncio.Semaphore(args.submits_in_flight or args.concurrency)
    limits = (
        httpx.Limits(max_connections=max(10, args.concurrency * 2))
        if args.connections is None
        else httpx.Limits(
            max_connections=args.connections, max_keepalive_connections=args.connections
        )
    )
    transport = None
    if args.cached_sockets:
        from runner.backends.netstream import with_cached_sockets

        transport = with_cached_sockets(httpx.AsyncHTTPTransport(limits=limits))
    async with httpx.AsyncClient(
        headers={"x-api-key": args.api_key}, timeout=60.0, limits=limits, transport=transport
    ) as client:
        report.started = time.time()
        outcomes = await asyncio.gather(
            *(
                _one(i, p, client=client, gate=gate, wire=wire, args=args, report=report)
                for i, p in enumerate(args.jobs)
            ),
            return_exceptions=True,
        )
        report.finished = time.time()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            report.failed += 1
            report.errors[type(outcome).__name__] += 1
        else:
            report.completed += 1
    return report


def main() -> None:
    """Entry point: run and print the report."""
    asyncio.run(run(parse_args())).print()


if __name__ == "__main__":
    main()
