"""What users would otherwise run, as child processes of the bench.

- `sdk_peer`: the vendor's SDK (`segmind` from PyPI) as its docs show it,
  `submit_async(...).wait(interval=...)` (what `client.run()` does, with the
  1 s poll interval scaled like everything else) in a thread pool of C workers;
- `httpx_peer`: a plain asyncio + httpx script with a semaphore of C and a
  fixed 1 s (scaled) poll.

Neither limits its own rate. Both save each image to a file, as the runner
does, and print one JSON line of what they did (`PeerReport`).
"""
