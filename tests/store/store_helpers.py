"""Shared pieces of the store tests: jobs, real small images, hand-made PNGs, a written folder."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

from runner.jobs import ImageInput, Job, Request, make_job
from runner.money import micros
from runner.store.layout import sidecar_path
from runner.store.ledger import Ledger
from runner.store.save import save_image
from runner.store.sidecar import build_sidecar, write_sidecar

PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
SMALL = (64, 48)


def encode(fmt: str, size: tuple[int, int] = SMALL, *, seed: int = 0) -> bytes:
    """A real image in `fmt` (png, jpeg, webp) of `size` pixels, with some structure."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image.putpixel((seed % width, (seed // width) % height), (255, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=PIL_NAMES[fmt])
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width: int, height: int, *, idat: bytes = b"\0" * 16) -> bytes:
    """A structurally valid PNG (CRCs right, IEND present) that declares any size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(idat))
        + png_chunk(b"IEND", b"")
    )


def job(
    *,
    prompt_id: str = "fox",
    prompt: str = "A red fox in the snow, golden hour",
    n: int = 1,
    output_format: str = "png",
    aspect_ratio: str = "1:1",
    resolution: str = "1k",
    mode: str = "standard",
    sweep: tuple[tuple[str, str | int], ...] = (),
    vars: tuple[tuple[str, str], ...] = (),
    image: ImageInput | None = None,
    index: int = 0,
    repeat: int = 0,
) -> Job:
    request = Request(
        prompt=prompt,
        mode=mode,
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        n=n,
        output_format=output_format,
        image=image,
    )
    return make_job(
        index=index,
        prompt_id=prompt_id,
        request=request,
        model="grok-imagine-image",
        vars=vars,
        sweep=sweep,
        repeat=repeat,
    )


def store_job(
    out: Path,
    ledger: Ledger,
    the_job: Job,
    *,
    at: float = 1_800_000_000.0,
    complete: bool = True,
) -> list[str]:
    """Run the store's write path for a finished job, as the run loop does; return its files.

    With ``complete=False`` it stops before the ledger commit, as a crash there would.
    """
    ledger.plan(the_job.key, the_job.index, the_job.prompt_id, micros(0.02 * the_job.request.n))
    ledger.submitting(the_job.key)
    ledger.submitted(the_job.key, f"req-{the_job.key8}", at)
    files = []
    for i in range(the_job.request.n):
        data = encode(the_job.request.output_format, seed=i + the_job.index)
        saved = save_image(out, the_job, i, data, expected_size=SMALL)
        sidecar = build_sidecar(
            job=the_job,
            index=i,
            image=saved.info,
            file_name=saved.name,
            backend="local",
            base_url="http://127.0.0.1:9",
            request_id=f"req-{the_job.key8}",
            estimate=micros(0.02 * the_job.request.n),
            submitted_at=at,
            completed_at=at + 12.5,
        )
        write_sidecar(sidecar_path(saved.path), sidecar)
        files.append(saved.name)
    if complete:
        ledger.completed(the_job.key, micros(0.02 * the_job.request.n), files, at + 12.5)
    return files
