"""mtvae studio in a real browser: Debian's chromium, headless, driven by Playwright for Python
through its executable path (nothing downloads a browser). The page serves a small trained run;
each test opens its own tab."""

import os
import shutil
import socket
from pathlib import Path

import pytest
import symusic

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM or not __import__("importlib").util.find_spec("playwright"):
    if os.environ.get("CI"):  # CI installs both (.ci/run): there a missing one is a failure
        raise RuntimeError("the studio's browser tests need chromium and playwright")
    pytest.skip("chromium or playwright missing (apt-get install chromium; pip install playwright)",
                allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.slow
WAIT = 120_000  # ms: a generation on a busy CI machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tiny_run):
    from mtvae.studio import serve

    demo, url = serve(tiny_run, port=free_port(), block=False)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.goto(url)
    pg.wait_for_selector("#sample")
    short(pg)
    yield pg
    ctx.close()


def short(pg) -> None:
    """Two-bar pieces: the tests check the page, not the music (CI's time is bounded)."""
    box = pg.locator("#bars input[type=number]")
    box.fill("2")
    box.press("Enter")


def result_midi(page) -> symusic.Score:
    """The MIDI the result panel offers for download, fetched and parsed."""
    link = page.locator("#midi a").first
    expect(link).to_be_visible(timeout=WAIT)
    return symusic.Score.from_midi(page.request.get(link.get_attribute("href")).body())


def test_sample_plays_and_downloads_and_the_page_is_pictured(page, tmp_path):
    page.locator("#sample").click()
    expect(page.locator("#info")).to_contain_text("1. sample", timeout=WAIT)
    expect(page.locator("#info")).to_contain_text("2 bars")  # the form's value was used
    expect(page.locator("#audio audio, #audio [data-testid='waveform-Listen']").first).to_be_attached()
    expect(page.locator("#roll img")).to_be_visible()
    score = result_midi(page)
    assert sum(len(t.notes) for t in score.tracks) > 0
    shot = Path(os.environ.get("MTVAE_STUDIO_SCREENSHOT", tmp_path / "studio.png"))
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_an_uploaded_song_is_infilled_and_the_rest_kept(page, nottingham):
    song = nottingham[40]
    page.locator("#song input[type=file]").set_input_files(str(song))
    page.get_by_role("tab", name="Infill").click()
    page.locator("#ranges textarea, #ranges input").first.fill("3-4")
    page.locator("#infill").click()
    expect(page.locator("#info")).to_contain_text("infill", timeout=WAIT)
    expect(page.locator("#audio audio, #audio [data-testid='waveform-Listen']").first).to_be_attached()
    out = result_midi(page)
    # the bars outside 3-4 are the song's own: its first two bars' notes come back unchanged
    original = symusic.Score(str(song))
    tpq_o, tpq = original.ticks_per_quarter, out.ticks_per_quarter

    def first_notes(score, tpq_):
        return sorted((n.time * 480 // tpq_, n.pitch) for t in score.tracks for n in t.notes
                      if n.time < 4 * tpq_)

    assert first_notes(out, tpq) and first_notes(out, tpq) == first_notes(original, tpq_o)


def test_a_bad_upload_gets_a_message_not_a_trace(page, bad_midi, tmp_path):
    page.locator("#song input[type=file]").set_input_files(str(bad_midi / "ValueError_Control168.mid"))
    page.get_by_role("tab", name="Continue").click()
    page.locator("#continue").click()
    error = page.get_by_text("not valid MIDI", exact=False).first
    expect(error).to_be_visible(timeout=WAIT)
    assert "Traceback" not in page.content()
    assert "/tmp/" not in error.inner_text()  # the file's name, not the server's path
    page.reload()
    page.wait_for_selector("#sample")
    fake = tmp_path / "song.mid"  # named like MIDI, holding text
    fake.write_text("MThd? no: a shopping list")
    page.locator("#song input[type=file]").set_input_files(str(fake))
    page.get_by_role("tab", name="Continue").click()
    page.locator("#continue").click()
    expect(page.get_by_text("song.mid: not valid MIDI", exact=False).first).to_be_visible(timeout=WAIT)


def test_each_tab_keeps_its_own_results(browser, url):
    tabs = []
    for _ in range(2):
        ctx = browser.new_context()
        pg = ctx.new_page()
        pg.goto(url)
        pg.wait_for_selector("#sample")
        short(pg)
        tabs.append((ctx, pg))
    (_, a), (_, b) = tabs
    a.locator("#sample").click()
    expect(a.locator("#info")).to_contain_text("1. sample", timeout=WAIT)
    a.locator("#sample").click()
    expect(a.locator("#info")).to_contain_text("2. sample", timeout=WAIT)
    b.locator("#sample").click()
    expect(b.locator("#info")).to_contain_text("1. sample", timeout=WAIT)  # not 3.
    for ctx, _ in tabs:
        ctx.close()
