"""The WebUI in a real browser: Playwright driving the system's headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from .conftest import ARTIFACTS, Server

pytestmark = pytest.mark.browser

@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server.url) or r.url.startswith(
        ("blob:", "data:")) else outside.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    yield page
    assert not outside, f"the page reached outside the service: {outside}"
    assert not errors, errors
    context.close()


def wait_for_result(page: Any) -> None:
    page.wait_for_selector("#results:not([hidden])", timeout=120_000)
    page.wait_for_function("() => document.getElementById('result').complete && "
                           "document.getElementById('result').naturalWidth > 0", timeout=60_000)
    page.wait_for_selector("#run:not([disabled])", timeout=120_000)


TRANSPARENT_PIXELS = """() => {
  const img = document.getElementById('result');
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let clear = 0, solid = 0;
  for (let i = 3; i < data.length; i += 4) {
    if (data[i] === 0) clear++;
    if (data[i] > 200) solid++;
  }
  return {clear, solid, total: data.length / 4};
}"""


def test_upload_a_photo_see_the_cutout_and_download_it(page: Any, photo_path: Path,
                                                       tmp_path: Path) -> None:
    page.wait_for_function(
        "() => document.querySelectorAll('#model option[value=u2net]').length == 1")
    assert page.input_value("#model") == "u2net"
    page.set_input_files("#file", str(photo_path))
    wait_for_result(page)
    counts = page.evaluate(TRANSPARENT_PIXELS)
    assert counts["clear"] > 0.05 * counts["total"] and counts["solid"] > 0.2 * counts["total"]
    assert "Done" in page.inner_text("#status")
    assert page.is_hidden("#error")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui-result.png"), full_page=True)

    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == "astronaut-cutout.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    im = Image.open(saved)
    assert im.format == "PNG" and im.mode == "RGBA"
    assert im.getchannel("A").getextrema() == (0, 255)


def test_options_mask_only_and_model_choice(page: Any, photo_path: Path) -> None:
    page.wait_for_function("() => document.querySelectorAll('#model option').length >= 2")
    page.select_option("#model", "u2netp")
    page.check("#only_mask")
    page.set_input_files("#file", str(photo_path))
    wait_for_result(page)
    assert "u2netp" in page.inner_text("#status")
    assert page.get_attribute("#download", "download") == "astronaut-mask.png"


def test_background_colour_and_jpeg(page: Any, photo_path: Path) -> None:
    page.check("#use_bgcolor")
    page.fill("#bgcolor", "#00ff00")
    page.select_option("#format", "jpeg")
    page.set_input_files("#file", str(photo_path))
    wait_for_result(page)
    assert page.get_attribute("#download", "download") == "astronaut-cutout.jpg"
    counts = page.evaluate(TRANSPARENT_PIXELS)
    assert counts["clear"] == 0


def test_a_text_file_shows_a_plain_error(page: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    message = page.inner_text("#error")
    assert "not an image" in message and "JPEG" in message
    assert "invalid_file_type" not in message  # plain words, not codes
    assert page.is_hidden("#results")


def test_keyboard_only_use(page: Any, photo_path: Path) -> None:
    # the file chooser opens from the keyboard: Tab to the drop zone, press Enter
    with page.expect_file_chooser() as chooser:
        page.focus("#file")
        page.keyboard.press("Enter")
    chooser.value.set_files(str(photo_path))
    wait_for_result(page)
    # options and the button are reachable and work from the keyboard
    page.focus("#only_mask")
    page.keyboard.press("Space")
    assert page.is_checked("#only_mask")
    page.focus("#run")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.getElementById('download').download.endsWith('-mask.png')",
        timeout=120_000)
    wait_for_result(page)


def test_paste_an_image(page: Any, photo_path: Path) -> None:
    data = list(photo_path.read_bytes())
    page.evaluate("""(bytes) => {
      const file = new File([new Uint8Array(bytes)], 'pasted.jpg', {type: 'image/jpeg'});
      const transfer = new DataTransfer();
      transfer.items.add(file);
      document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: transfer}));
    }""", data)
    wait_for_result(page)
    assert page.get_attribute("#download", "download") == "pasted-cutout.png"


def test_drop_an_image(page: Any, photo_path: Path) -> None:
    data = list(photo_path.read_bytes())
    page.evaluate("""(bytes) => {
      const file = new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'});
      const transfer = new DataTransfer();
      transfer.items.add(file);
      document.getElementById('drop').dispatchEvent(
        new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", data)
    wait_for_result(page)
    assert page.get_attribute("#download", "download") == "dropped-cutout.png"


def test_works_at_375_px(browser: Any, server: Server, photo_path: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.set_input_files("#file", str(photo_path))
    wait_for_result(page)
    # nothing wider than the screen: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = page.locator("#result").bounding_box()
    assert box["width"] <= 375
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webui-result-375px.png"), full_page=True)
    context.close()


def test_the_checkerboard_is_behind_the_result(page: Any) -> None:
    background = page.evaluate(
        "getComputedStyle(document.querySelector('.checker')).backgroundImage")
    assert "linear-gradient" in background




def test_api_docs_render_offline(browser: Any, server: Server) -> None:
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:"))
            else outside.append(r.url))
    page.goto(server.url + "/docs")
    for path in ("/api/remove", "/api/models", "/v1.0/removebg", "/metrics"):
        page.get_by_text(path, exact=True).first.wait_for(timeout=60_000)
    assert not outside, outside
    context.close()
