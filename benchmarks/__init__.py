"""`make bench`: the runner against its peers and the ideal bound, on a loopback emulator.

`python -m benchmarks` runs five scenarios (rate-bound batches, polling
economy, peers side by side, scale, the emulator itself) against
`runner.emulator` served on loopback with time scaled down, and writes
docs/benchmarks.md (a table per scenario) and docs/benchmarks.json (the raw
figures). Not part of `make test`; tests/test_bench_harness.py checks the
harness itself.
"""
