"""Run one bomb case in this process and print its peak RSS (VmHWM, KiB); `make chaos` calls it.

    python bomb_rss.py OUT_DIR {gzip_status|gzip_result|json_status|datauri_result}

A fresh process per bomb, so the figure is that bomb's alone: the peak
resident set of the whole run (interpreter, emulator, runner), read from
/proc/self/status, not from a parent's wait4 (which would include the
parent's own peak).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from hostile_corpus import emulator_config, one_job_manifest, run_case

from runner.emulator import Emulator, serve_in_thread
from runner.run import RunOptions, run_manifest

GIB = 1024**3
MIB = 1024**2


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


async def gzip_bomb(out: Path, kind: str) -> str:
    emu = Emulator(emulator_config(hostile_bytes=6 * GIB))
    emu.faults.script(kind, "gzip_bomb")  # type: ignore[arg-type]
    _, row = await run_case(emu, out, one_job_manifest(out))
    return row.state


async def huge_body(out: Path, kind: str, size: int) -> str:
    config = emulator_config(hostile_bytes=size, time_scale=0.001)
    with serve_in_thread(config) as served:
        served.emulator.faults.script(kind, "huge_body")  # type: ignore[arg-type]
        options = RunOptions(
            backend="segmind", base_url=served.base_url, out=out / "out", time_scale=0.001, seed=1
        )
        report = await run_manifest(one_job_manifest(out), options, env={"SEGMIND_API_KEY": "sk-b"})
    return "completed" if report.stats.completed == 1 else "not completed"


def main(out: Path, case: str) -> None:
    cases = {
        "gzip_status": lambda: gzip_bomb(out, "status"),
        "gzip_result": lambda: gzip_bomb(out, "result"),
        "json_status": lambda: huge_body(out, "status", 500 * MIB),
        "datauri_result": lambda: huge_body(out, "result", 200 * MIB),
    }
    state = anyio.run(cases[case])
    print(f"{case} {state} {vm_hwm_kib()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
