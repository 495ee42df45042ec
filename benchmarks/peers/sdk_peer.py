"""The vendor's SDK as its docs show it, in a thread pool of C workers.

Each worker does what `client.run()` does (`submit_async(...).wait()`),
but with `wait(interval=...)`: `run()` polls every 1 s of real time, which
on a time-scaled emulator would be unfairly slow, so the bench passes the
same 1 s scaled like every other duration. The image is then downloaded
from the result's URL with httpx, as a user would. The SDK raises on a 429
(and on any other error): that job fails, as it would for a user who
follows the docs. Run: python -m benchmarks.peers.sdk_peer --base-url URL ...
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import httpx
from segmind import SegmindClient

from benchmarks.peers.common import PeerArgs, PeerReport, image_name, output_urls, parse_args


def run(args: PeerArgs) -> PeerReport:
    """Run every job in the pool; count what happened."""
    report = PeerReport()
    client = SegmindClient(api_key=args.api_key, base_url=f"{args.base_url}/v1")
    downloads = httpx.Client(timeout=60.0)

    def one(index: int, params: dict[str, Any]) -> None:
        job = client.submit_async(args.model, **params)
        body = job.wait(interval=args.interval)
        for i, url in enumerate(output_urls(body)):
            image = downloads.get(url)
            image.raise_for_status()
            (args.out / image_name(index, i, params)).write_bytes(image.content)

    report.started = time.time()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = [pool.submit(one, i, p) for i, p in enumerate(args.jobs)]
        for future in as_completed(futures):
            error = future.exception()
            if error is None:
                report.completed += 1
            else:
                report.failed += 1
                report.errors[type(error).__name__] += 1
                if "429" in str(error) or getattr(error, "status", None) == 429:
                    report.seen_429 += 1
    report.finished = time.time()
    downloads.close()
    return report


def main() -> None:
    """Entry point: run and print the report."""
    run(parse_args()).print()


if __name__ == "__main__":
    main()
