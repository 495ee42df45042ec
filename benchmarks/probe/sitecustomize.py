"""The bench's child probe: a Python child reports its own peak memory and CPU at exit.

`run_process` puts this folder first on the child's PYTHONPATH, so Python
imports this file at start-up (the `site` module's sitecustomize hook) in
every Python child the bench measures: the runner and the peers alike.
At exit it writes, to the file named by BENCH_PROBE_OUT, the process's
own high-water resident set (`VmHWM` of /proc/self/status, in KiB) and its
`getrusage(RUSAGE_SELF)`. Unlike `wait4`'s ru_maxrss, which on Linux can
carry the parent's peak from before the exec (the bench serves an emulator
in its own process), these are the child's alone: the kernel resets VmHWM
at exec.
"""

from __future__ import annotations

import atexit
import json
import os
import resource


def _report() -> None:
    target = os.environ.get("BENCH_PROBE_OUT")
    if not target:
        return
    hwm_kib = None
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    hwm_kib = int(line.split()[1])
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(target, "w", encoding="utf-8") as out:
        json.dump(
            {
                "vmhwm_kib": hwm_kib,
                "maxrss_kib": usage.ru_maxrss,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            },
            out,
        )


atexit.register(_report)
