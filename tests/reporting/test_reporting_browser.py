"""The gallery in real headless Chromium, opened from file:// with no server.

Needs Playwright's Python package and a Chromium binary (Debian's
``chromium``; never ``playwright install``, which downloads a browser).
Skipped with the reason when either is missing, but required when the
``CI`` environment variable is set: there the test fails instead.
One browser per module; each test gets a fresh context (no shared state).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing
from PIL import Image
from reporting_helpers import SWEEP_DEMO, Folder, make_folder, make_sweep_folder

from runner.emulator import EmulatorConfig
from runner.jobs import Job, Request, make_job
from runner.manifest import load_manifest
from runner.reporting.gallery import GalleryItem, page_data, write_gallery
from runner.reporting.gallery_page import render_page
from runner.reporting.jobinfo import facts_of_job
from runner.reporting.thumbnails import Thumb
from runner.run import RunOptions, run_manifest
from runner.sweep import expand

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the browser test is required in CI: {reason}")
    pytest.skip(reason)


def _chromium() -> str | None:
    named = os.environ.get("CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright)")
    executable = _chromium()
    if executable is None:
        _unavailable("no chromium found (apt-get install chromium, or set CHROMIUM=/path)")
    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile.
        launched = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A page with the console errors and uncaught exceptions it met."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda err: self.errors.append(f"uncaught: {err}"))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: Path, fragment: str = "") -> Any:
        self.page.goto(path.resolve().as_uri() + fragment)
        self.page.wait_for_selector("body[data-ready=true]")
        return self.page

    def keys_in(self, row: str, col: str) -> set[str]:
        selector = f'.cell[data-row="{row}"][data-col="{col}"] .tile'
        return set(self.page.eval_on_selector_all(selector, "ts => ts.map(t => t.dataset.key)"))


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Anything but file:// is a network request, which the gallery must never make.
    context.route("http*://**/*", lambda route: route.abort())
    try:
        page = Page(context.new_page())
        yield page
        assert page.errors == []  # CSP violations and script errors land here
        assert page.dialogs == []
    finally:
        context.close()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    folder = make_sweep_folder(tmp_path_factory.mktemp("sweep") / "out")
    write_gallery(folder.out, jobs=folder.by_key)
    return folder


def expected(folder: Folder, row: tuple[str, str], col: tuple[str, str]) -> set[str]:
    """Keys of the jobs whose values on the two axes are `row` and `col` (name, value)."""

    def value(job: Job, name: str) -> str:
        if name == "prompt":
            return str(job.prompt_id)
        if name.startswith("var:"):
            return dict(job.vars).get(name[4:], "")
        return str(job.request.params()[name])

    return {
        job.key
        for job in folder.jobs
        if value(job, row[0]) == row[1] and value(job, col[0]) == col[1]
    }


def test_the_grid_follows_the_chosen_axes(tab: Page, sweep: Folder, tmp_path: Path) -> None:
    page = tab.open(sweep.out / "gallery.html")
    assert page.input_value("#rows") == "prompt"
    assert page.input_value("#cols") == "aspect_ratio"
    for prompt in ("mug", "lighthouse"):
        for ratio in ("16:9", "1:1"):
            want = expected(sweep, ("prompt", prompt), ("aspect_ratio", ratio))
            assert want and tab.keys_in(prompt, ratio) == want

    page.select_option("#rows", "var:color")
    page.select_option("#cols", "var:surface")
    assert "rows=var%3Acolor" in page.url
    for color in ("red", "teal"):
        for surface in ("an oak table", "white marble"):
            want = expected(sweep, ("var:color", color), ("var:surface", surface))
            assert tab.keys_in(color, surface) == want

    failed = sweep.job(5)
    cell = page.locator('.cell[data-row="red"][data-col="white marble"]')
    card = cell.locator(f'.tile[data-key="{failed.key}"]')
    assert card.get_attribute("data-state") == "failed"
    assert sweep.failed[failed.key] in card.inner_text()
    assert card.locator("img").count() == 0

    page.click("#swap")
    assert page.input_value("#rows") == "var:surface"
    assert tab.keys_in("white marble", "red") == expected(
        sweep, ("var:color", "red"), ("var:surface", "white marble")
    )
    page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)
    with Image.open(tmp_path / "gallery.png") as shot:
        assert shot.width >= 1000


def test_details_open_on_click_and_close_on_escape(
    tab: Page, sweep: Folder, tmp_path: Path
) -> None:
    page = tab.open(sweep.out / "gallery.html")
    job = sweep.job(0)
    tile = page.locator(f'.tile[data-key="{job.key}"]')
    thumb_src = tile.locator("img").get_attribute("src")
    assert thumb_src is not None and thumb_src.startswith(".gallery/thumbs/")
    tile.click()
    dialog = page.locator("dialog#detail")
    assert dialog.evaluate("d => d.open")
    assert job.key8 in page.inner_text("#dlg-title")
    details = page.inner_text("#dlg-details")
    assert f"req-{job.key8}" in details
    assert job.request.prompt in details
    image = page.locator("#dlg-image")
    assert (
        image.get_attribute("src") == "mug/red-an-oak-table-16x9-jpeg-9b2397fa-0.jpg"
    )  # var values first (issue 15)
    page.wait_for_function("() => document.getElementById('dlg-image').naturalWidth > 0")
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [1408, 768]
    page.screenshot(path=str(tmp_path / "detail.png"))
    assert (tmp_path / "detail.png").stat().st_size > 0

    page.keyboard.press("ArrowRight")
    assert sweep.job(1).key8 in page.inner_text("#dlg-title")
    page.keyboard.press("Escape")
    assert not dialog.evaluate("d => d.open")


def test_filters_hide_prompts_states_and_search(tab: Page, sweep: Folder) -> None:
    page = tab.open(sweep.out / "gallery.html", "#rows=var:time&cols=mode")
    assert (page.input_value("#rows"), page.input_value("#cols")) == ("var:time", "mode")
    page.click("details.filters summary")
    page.click('.filter-group[data-axis="prompt"] .chip:text-is("lighthouse")')
    keys = set(page.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.key)"))
    assert keys == {job.key for job in sweep.jobs if job.prompt_id == "mug"}
    assert page.inner_text("#count") == "showing 14 of 24"
    page.fill("#search", "moderation")
    keys = set(page.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.key)"))
    assert keys == set(sweep.failed)


def test_user_text_stays_text(tab: Page, tmp_path: Path) -> None:
    hostile = '</script><script>window.pwned = 1</script><img src=x onerror="alert(1)">'
    request = Request(
        prompt=hostile, mode="standard", aspect_ratio="1:1", resolution="1k", n=1,
        output_format="png",
    )  # fmt: skip
    jobs = [make_job(index=i, prompt_id="evil", request=request, model="m", repeat=i)
            for i in range(2)]  # fmt: skip
    folder = make_folder(tmp_path / "out", jobs, failed={1: hostile}, expired=frozenset(),
                         not_run=frozenset(), ambiguous={}, size=(48, 48))  # fmt: skip
    write_gallery(folder.out, jobs=folder.by_key, title=hostile)
    page = tab.open(folder.out / "gallery.html")
    assert page.evaluate("() => window.pwned") is None
    assert page.inner_text("#title") == hostile
    assert page.locator("img[src=x]").count() == 0
    reason = page.locator('.tile[data-state="failed"] .reason')
    assert reason.inner_text() == hostile


def test_a_thousand_images_lay_out_and_switch(tab: Page, tmp_path: Path) -> None:
    thumb = tmp_path / ".gallery" / "thumbs" / "t.webp"
    thumb.parent.mkdir(parents=True)
    Image.new("RGB", (160, 90), (40, 90, 160)).save(thumb)
    items = []
    for index in range(1000):
        request = Request(
            prompt=f"subject {index % 10}", mode="standard",
            aspect_ratio=("16:9", "1:1")[index // 10 % 2], resolution="1k", n=1,
            output_format="webp",
        )  # fmt: skip
        job = make_job(
            index=index, prompt_id=f"p{index // 100}", request=request, model="m",
            vars=(("subject", str(index % 10)),), sweep=(("aspect_ratio", request.aspect_ratio),),
            repeat=index // 20 % 5,
        )  # fmt: skip
        items.append(
            GalleryItem(
                key=job.key, state="completed", order=index, prompt_id=job.prompt_id,
                facts=facts_of_job(job), image=".gallery/thumbs/t.webp", sha256="0" * 64,
                thumb=Thumb(".gallery/thumbs/t.webp", 160, 90), details=(("n", str(index)),),
            )
        )  # fmt: skip
    data = page_data(items, title="big", meta=[("1,000", "images")])
    (tmp_path / "gallery.html").write_text(render_page("big", data), encoding="utf-8")
    page = tab.open(tmp_path / "gallery.html")
    assert page.locator(".tile").count() == 1000
    assert page.locator(".tile img[loading=lazy]").count() == 1000
    assert page.locator(".cell").count() == 10 * 2  # prompt x aspect_ratio
    page.select_option("#rows", "var:subject")
    page.select_option("#cols", "repeat")
    assert page.locator(".cell").count() == 10 * 5
    assert page.locator(".tile").count() == 1000
    last = items[-1]
    page.locator(f'.tile[data-key="{last.key}"]').click()
    assert last.key[3:11] in page.inner_text("#dlg-title")
    page.keyboard.press("Escape")


def test_the_gallery_of_a_real_sweep_run(tab: Page, tmp_path: Path) -> None:
    """A run with content blocks and a credit stop, opened as a user would after `runner run`."""
    manifest = load_manifest(str(SWEEP_DEMO))
    out = tmp_path / "out"
    block = "the emulator refuses white marble"

    async def run() -> None:
        await run_manifest(
            manifest,
            RunOptions(backend="local", out=out, max_credits=0.36),
            env={},
            emulator_config=EmulatorConfig(block_patterns=(r"white marble",), block_message=block),
        )

    clock = trio.testing.MockClock(autojump_threshold=0)
    anyio.run(run, backend="trio", backend_options={"clock": clock})
    jobs = {job.key: job for job in expand(manifest)}
    write_gallery(out, jobs=jobs, prices=manifest.prices, title=manifest.name)

    page = tab.open(out / "gallery.html")
    assert page.inner_text("#title") == "sweep-demo"
    page.select_option("#rows", "var:surface")
    page.select_option("#cols", "var:color")
    tiles = page.eval_on_selector_all(
        ".cell .tile",
        "ts => ts.map(t => [t.closest('.cell').dataset.row, t.closest('.cell').dataset.col,"
        " t.dataset.key, t.dataset.state, t.innerText])",
    )
    assert len(tiles) == 24
    for row, col, key, state, text in tiles:
        job = jobs[key]
        assert (row, col) == (dict(job.vars).get("surface", ""), dict(job.vars).get("color", ""))
        if row == "white marble":
            assert state in ("failed", "planned")
            assert state == "planned" or block in text
        else:
            assert state in ("completed", "planned")
    assert any(state == "failed" for *_, state, _ in tiles)
    assert any(state == "completed" for *_, state, _ in tiles)
    done = next(key for _, _, key, state, _ in tiles if state == "completed")
    page.locator(f'.tile[data-key="{done}"]').click()
    assert jobs[done].key8 in page.inner_text("#dlg-title")
    page.wait_for_function("() => document.getElementById('dlg-image').naturalWidth > 0")
    page.screenshot(path=str(tmp_path / "real-run-detail.png"))
    page.keyboard.press("Escape")
    page.screenshot(path=str(tmp_path / "real-run.png"), full_page=True)
    assert (tmp_path / "real-run.png").stat().st_size > 0
