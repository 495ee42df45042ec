"""Peak memory (own VmHWM) of the end-of-run reports over a folder of N completed jobs.

    python benchmarks/reports_memory.py build /dev/shm/r100k 100000
    python benchmarks/reports_memory.py gallery /dev/shm/r100k     # write_gallery alone
    python benchmarks/reports_memory.py reports /dev/shm/r100k     # summary, gallery, JUnit

The folder is built through the store API (as scale.py's `resume_first_send`
does) but with real files: an 8 x 8 JPEG and a full sidecar per job, so the
gallery sees N images. Each measure is one process that prints its own
peak resident set (VmHWM, MiB) before and after the work, so the figure is
the reports', as `runner run` writes them past 50,000 jobs (no job list).
Run a measure with PYTHONPATH naming the checkout to measure (before/after).
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

_MIB = 1024 * 1024


def vm_hwm_mib() -> float:
    """This process's peak resident set so far, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / _MIB
    return float("nan")


def build(out: Path, count: int) -> None:
    """`count` completed jobs (8 x 8 JPEG, sidecar, ledger row) in `out`."""
    from PIL import Image

    from runner.jobs import Request, make_job
    from runner.money import Micros
    from runner.store import Ledger, build_sidecar, save_image, sidecar_path, write_sidecar

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 90, 160)).save(buffer, format="JPEG")
    picture = buffer.getvalue()

    def job(i: int):  # type: ignore[no-untyped-def]
        request = Request(
            prompt=f"a mug {i} on a table", mode="standard", aspect_ratio="1:1",
            resolution="1k", n=1, output_format="jpeg",
        )  # fmt: skip
        return make_job(
            index=i, prompt_id=f"p{i // 1000}", request=request, model="grok-imagine-image",
            vars=(("subject", str(i % 1000)),), sweep=(("aspect_ratio", "1:1"),),
        )  # fmt: skip

    at = time.time()
    with Ledger.open(out, backend="local", base_url="http://127.0.0.1:9") as ledger:
        ledger.plan_many(
            (j.key, j.index, j.prompt_id, Micros(20_000)) for j in map(job, range(count))
        )
        with ledger.transaction():
            for i in range(count):
                j = job(i)
                saved = save_image(out, j, 0, picture, expected_size=None)
                sidecar = build_sidecar(
                    job=j, index=0, image=saved.info, file_name=saved.name, backend="local",
                    base_url="http://127.0.0.1:9", request_id=f"req-{j.key8}",
                    estimate=Micros(20_000), charged=Micros(20_000), submitted_at=at,
                    completed_at=at + 11.5, queue_s=0.5, inference_s=10.25, wall_s=11.5,
                    manifest_path="manifests/scale.yaml", manifest_sha256="0" * 64, seed=i,
                )  # fmt: skip
                write_sidecar(sidecar_path(saved.path), sidecar)
                ledger.completed(j.key, Micros(20_000), [saved.name], at + 11.5)


def main(argv: list[str]) -> None:
    what, out = argv[0], Path(argv[1])
    if what == "build":
        build(out, int(argv[2]))
        return
    from runner.reporting.gallery import write_gallery
    from runner.reporting.junit import write_junit
    from runner.reporting.summary import summarize_folder, write_summary

    before = vm_hwm_mib()
    started = time.perf_counter()
    if what == "reports":
        write_summary(out, summarize_folder(out))
    write_gallery(out)
    if what == "reports":
        write_junit(out / "junit.xml", out)
    wall = time.perf_counter() - started
    print(f"{what}: VmHWM {before:.0f} MiB at start, {vm_hwm_mib():.0f} MiB peak; {wall:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
