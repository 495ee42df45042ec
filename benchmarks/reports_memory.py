"""Peak memory (own VmHWM) of the end-of-run reports over a folder of N completed jobs.

    python -m benchmarks.reports_memory build /dev/shm/r100k 100000
    python -m benchmarks.reports_memory reports /dev/shm/r100k/out   # as `runner run` ends
    python -m benchmarks.reports_memory gallery /dev/shm/r100k/out   # write_gallery alone

`build` makes the folder a 100,000-job run of the bench's batch manifest
(benchmarks/manifests.py `Batch`) leaves: a small real run against the
emulator (64 px JPEG images) gives one real sidecar and image; then every
job of the big manifest gets, through the store API as scale.py's
`resume_first_send` does (ledger rows marked completed in one
transaction), its own image (the real one with a pixel changed, so every
image has its own sha256 and the gallery makes a thumbnail of each shown)
and the real sidecar with the fields a run writes per job changed (key,
index, prompt, vars, request id, stamps, seed, file). Building takes about
a minute for 100,000 jobs, a run of them half an hour.

`reports` runs, in this process, the reports `runner run` writes at its end
(`_report` in runner/cli/run.py) past `REPORT_ALL_JOBS_UP_TO` jobs (no job
list): summary.json / summary.md, then the gallery; `--junit` adds the JUnit
file. It prints one JSON line: VmHWM at start and at the end (MiB), the
resident set after each step, and the wall seconds. `measure` runs that in a
child (benchmarks/processes.py, the child's own peak), for `make bench`.
Run a measure with PYTHONPATH naming the checkout to measure (before/after).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.clients import ROOT, child_env

_MIB = 1024 * 1024
MANIFEST = "manifest.yaml"


def _status_mib(field: str) -> float:
    """A field of /proc/self/status (VmHWM, VmRSS) in MiB; NaN where there is none."""
    try:
        lines = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / _MIB
    return float("nan")


def vm_hwm_mib() -> float:
    """This process's peak resident set so far, MiB (Linux /proc)."""
    return _status_mib("VmHWM")


def real_sample(folder: Path) -> tuple[Path, bytes]:
    """A small real run (2 jobs, emulator with 64 px images): the sidecar path and image
    bytes of its first job, as a run wrote them.
    """
    from benchmarks.clients import bench_emulator, run_runner, served
    from benchmarks.manifests import Batch, write_manifest
    from runner.store import read_sidecar, sidecar_path

    manifest = write_manifest(Batch(jobs=2, rpm=1_000_000), folder)
    out = folder / "out"
    with served(bench_emulator(0.05, latency="fixed:0", image_px=64)) as server:
        run_runner(server, manifest, out, 0.05, json_events=False, timeout=300).process.check()
    image = min((out / "p").glob("*.jpg"))
    sidecar = sidecar_path(image)
    read_sidecar(sidecar)  # a real, valid one
    return sidecar, image.read_bytes()


def build(folder: Path, count: int) -> Path:
    """`folder`/manifest.yaml of `count` jobs and `folder`/out with every job completed
    (image, sidecar, ledger row); returns the output folder.
    """
    from PIL import Image

    from benchmarks.manifests import Batch, write_manifest
    from runner.manifest import load_manifest
    from runner.money import Micros, micros
    from runner.store import Ledger, read_sidecar, sidecar_path, utc_stamp
    from runner.store.layout import image_path, relative_name
    from runner.store.media import check_image
    from runner.store.sidecar import sidecar_json
    from runner.sweep import expand

    sample_path, sample_bytes = real_sample(folder / "sample")
    sample = read_sidecar(sample_path)
    with Image.open(io.BytesIO(sample_bytes)) as opened:
        pixels = opened.convert("RGB")
    manifest = write_manifest(Batch(jobs=count, rpm=1_000_000), folder)
    manifest_ref = sample.manifest and sample.manifest.model_copy(
        update={"path": str(manifest), "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}
    )
    out = folder / "out"
    charged = micros(sample.credits.charged_usd or sample.credits.estimated_usd)
    estimate = micros(sample.credits.estimated_usd)
    timings = sample.timings
    wall = timings.wall_s or 0.0
    started = time.time()
    with Ledger.open(out, backend=sample.backend.name, base_url=sample.backend.base_url) as ledger:
        ledger.plan_many(
            (job.key, job.index, job.prompt_id, estimate)
            for job in expand(load_manifest(str(manifest)))
        )
        with ledger.transaction():
            for job in expand(load_manifest(str(manifest))):
                # The index drawn in 8 x 8 blocks of 4 levels (a JPEG block each, levels 85
                # apart: no quantizing merges them): every image its own bytes and sha256.
                picture = pixels.copy()
                for digit in range(9):
                    level = (job.index >> (2 * digit) & 3) * 85
                    box = (8 * (digit % 8), 8 * (digit // 8))
                    picture.paste((level, level, level), (*box, box[0] + 8, box[1] + 8))
                buffer = io.BytesIO()
                picture.save(buffer, format="JPEG", quality=90)
                data = buffer.getvalue()
                info = check_image(data, expected_format="jpeg", expected_size=None)
                path = image_path(out, job, 0)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                name = relative_name(out, path)
                submitted = started + job.index * 0.01
                sidecar = sample.model_copy(
                    update={
                        "key": job.key,
                        "prompt_id": job.prompt_id,
                        "job_index": job.index,
                        "repeat": job.repeat,
                        "prompt": job.request.prompt,
                        "vars": dict(job.vars),
                        "sweep": dict(job.sweep),
                        "request_id": f"{sample.request_id or 'req'}-{job.index}",
                        "seed": job.index,
                        "manifest": manifest_ref,
                        "timings": timings.model_copy(
                            update={
                                "submitted_at": utc_stamp(submitted),
                                "completed_at": utc_stamp(submitted + wall),
                            }
                        ),
                        "file": sample.file.model_copy(
                            update={"name": name, "bytes": info.bytes, "sha256": info.sha256}
                        ),
                    }
                )
                sidecar_path(path).write_text(sidecar_json(sidecar), encoding="utf-8")
                ledger.completed(job.key, Micros(charged), [name], submitted + wall)
    return out


def reports(out: Path, *, junit: bool = False, only_gallery: bool = False) -> dict[str, Any]:
    """The end-of-run reports of `out` as `runner run` writes them past
    REPORT_ALL_JOBS_UP_TO jobs (jobs=None); the peak and the resident set at each step.
    """
    from runner.params import DEFAULT_PRICES
    from runner.reporting.exit_codes import decide_exit
    from runner.reporting.gallery import write_gallery
    from runner.reporting.junit import write_junit
    from runner.reporting.summary import summarize_folder, with_exit, write_summary

    # The bench manifest's prices are the defaults and its name is "bench"; it is not
    # loaded here (its 100,000 var values in YAML would be most of this process's peak).
    manifest, prices, title = str(out.parent / MANIFEST), DEFAULT_PRICES, "bench"
    steps: dict[str, float] = {"start": _status_mib("VmRSS")}
    before = vm_hwm_mib()
    started = time.perf_counter()
    if not only_gallery:
        summary = summarize_folder(
            out, jobs=None, prices=prices, manifest=manifest, started_at=time.time()
        )
        steps["summary built"] = _status_mib("VmRSS")
        decision = decide_exit(summary.jobs.by_state, stop=None, stop_reason="", max_failures=None)
        write_summary(out, with_exit(summary, decision))
        del summary
        steps["summary written"] = _status_mib("VmRSS")
    write_gallery(out, jobs=None, prices=prices, title=title)
    steps["gallery written"] = _status_mib("VmRSS")
    if junit:
        write_junit(out / "junit.xml", out, jobs=None, prices=prices, name=title)
        steps["junit written"] = _status_mib("VmRSS")
    return {
        "hwm_start_mib": before,
        "peak_mib": vm_hwm_mib(),
        "wall_s": time.perf_counter() - started,
        "rss_mib": steps,
    }


def measure(out: Path, *, junit: bool = False) -> dict[str, Any]:
    """`reports` over `out` in a child process: its own figures and its peak (VmHWM)."""
    from benchmarks.processes import run_process

    argv = [sys.executable, "-m", "benchmarks.reports_memory", "reports", str(out)]
    process = run_process(
        [*argv, *(["--junit"] if junit else [])], env=child_env(), cwd=ROOT, timeout=900
    ).check()
    figures: dict[str, Any] = json.loads(process.stdout.strip().splitlines()[-1])
    return figures | {"child_peak_mib": process.peak_rss_mib, "peak_source": process.peak_source}


def main(argv: list[str]) -> None:
    """The command line: see the module docstring."""
    what, where = argv[0], Path(argv[1])
    if what == "build":
        count = int(argv[2])
        at = time.perf_counter()
        out = build(where, count)
        print(f"built {count:,} jobs in {out} in {time.perf_counter() - at:.0f} s")
        return
    figures = reports(where, junit="--junit" in argv, only_gallery=what == "gallery")
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
