"""The WebUI in a real browser: Playwright driving the system's headless Chromium.

Every test's page is watched: nothing outside the service is fetched, no script error, no console
error and no Content-Security-Policy violation (a test that provokes an error answer on purpose
says which console line it expects). Screenshots of each state go to test-artifacts/webui/.
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import GOLDEN

from .conftest import ARTIFACTS, Server, start_server, stop_server

pytestmark = pytest.mark.browser

SHOTS = ARTIFACTS / "webui"
INPUTS = GOLDEN / "inputs"

CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@dataclass
class Watch:
    """What a page did that it should not: reached outside, threw, logged an error."""

    outside: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # responses >= 400 the test did not expect
    expected: list[str] = field(default_factory=list)  # substrings of console lines allowed

    def expect(self, text: str) -> None:
        self.expected.append(text)


def watch_page(page: Any, server: Server, watch: Watch) -> None:
    page.on("request", lambda r: None if r.url.startswith((server.url, "blob:", "data:"))
            else watch.outside.append(r.url))
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    page.on("console", lambda m: watch.console.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: watch.failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/api/remove" not in r.url else None)


def check_watch(page: Any, watch: Watch) -> None:
    assert not watch.outside, f"the page reached outside the service: {watch.outside}"
    assert not watch.errors, watch.errors
    unexpected = [line for line in watch.console
                  if not any(text in line for text in watch.expected)]
    assert not unexpected, f"console errors: {unexpected}"
    assert not watch.failed, f"resources that failed: {watch.failed}"
    assert page.evaluate("window.__csp") == [], "Content-Security-Policy violations"


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: Any, server: Server, watch: Watch) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    watch_page(page, server, watch)
    page.goto(server.url + "/")
    wait_for_options(page)
    yield page
    check_watch(page, watch)
    context.close()


def wait_for_options(page: Any) -> None:
    page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")


# The selected photo in the queue is done and its result is in the page (test_access.py uses
# this and TRANSPARENT_PIXELS too).
SELECTED_DONE = """() => {
  const pick = document.querySelector('#queue .pick[aria-current="true"]');
  if (!pick) return false;
  const item = pick.closest('.item');
  const img = item.querySelector('img');
  return item.dataset.state === 'done' && img.dataset.kind === 'result' && img.complete
    && img.naturalWidth > 0;
}"""


def wait_for_result(page: Any) -> None:
    page.wait_for_selector("#results:not([hidden])", timeout=120_000)
    page.wait_for_function(SELECTED_DONE, timeout=120_000)
    page.wait_for_selector("#run:not([disabled])", timeout=120_000)
    settle(page)


def wait_for_all(page: Any, count: int) -> None:
    page.wait_for_function(
        """(n) => {
          const items = [...document.querySelectorAll('#queue .item')];
          return items.length === n && items.every((i) => i.dataset.state === 'done');
        }""",
        arg=count, timeout=240_000)
    wait_for_result(page)


def settle(page: Any) -> None:
    """Two animation frames: whatever was asked to be drawn is on the canvas."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


# The result the server sent for the selected photo: how many pixels are clear, how many solid.
TRANSPARENT_PIXELS = """async () => {
  const img = document.querySelector('#queue .pick[aria-current="true"] img');
  await img.decode();
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

CANVAS_PIXELS = """() => {
  const c = document.getElementById('view');
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let text = '';
  for (let i = 0; i < data.length; i += 0x8000)
    text += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
  return {width: c.width, height: c.height, data: btoa(text)};
}"""


def canvas_pixels(page: Any) -> np.ndarray:
    """What the view canvas shows now, as an H×W×4 array."""
    settle(page)
    got = page.evaluate(CANVAS_PIXELS)
    flat = np.frombuffer(base64.b64decode(got["data"]), dtype=np.uint8)
    return flat.reshape(got["height"], got["width"], 4).astype(int)


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of pixels that differ clearly between two canvas captures."""
    return float((np.abs(a - b)[:, :, :3].sum(axis=2) > 30).mean())


def view_transform(page: Any) -> tuple[float, float, float]:
    scale, cx, cy = (float(v) for v in page.get_attribute("#view", "data-view").split())
    return scale, cx, cy


def to_screen(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of the photo's pixel (x, y) in the view."""
    box = page.locator("#view").bounding_box()
    scale, cx, cy = view_transform(page)
    return (box["x"] + box["width"] / 2 + (x - cx) * scale,
            box["y"] + box["height"] / 2 + (y - cy) * scale)


def zoom_percent(page: Any) -> int:
    return int(page.inner_text("#zoom-level").rstrip("%"))


def shot(page: Any, name: str, **kwargs: Any) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    return path


def download(page: Any, selector: str, tmp_path: Path) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.click(selector)
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    return info.value.suggested_filename, saved.read_bytes()


def open_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


DROP_FILES = """(files) => {
  const transfer = new DataTransfer();
  for (const [name, type, data] of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, {type}));
  }
  document.getElementById('drop').dispatchEvent(
    new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
}"""


def drop_files(page: Any, *paths: Path) -> None:
    page.evaluate(DROP_FILES, [[p.name, "image/jpeg", b64(p)] for p in paths])


def multipart(request: Any) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a multipart/form-data request: name -> (filename, bytes)."""
    ctype = request.headers["content-type"]
    boundary = re.search(r"boundary=(.+)", ctype).group(1).strip('"').encode()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for chunk in request.post_data_buffer.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head).group(1).decode()
        filename = re.search(rb'filename="([^"]*)"', head)
        parts[name] = (filename.group(1).decode() if filename else None, body[:-2])
    return parts


def upload_photo(page: Any, photo_path: Path) -> None:
    page.set_input_files("#file", str(photo_path))
    wait_for_result(page)


# --- one photo: the basic flow ------------------------------------------------------------
def test_upload_a_photo_see_the_cutout_and_download_it(page: Any, photo_path: Path,
                                                       tmp_path: Path) -> None:
    assert page.input_value("#model") == "u2net"
    upload_photo(page, photo_path)
    counts = page.evaluate(TRANSPARENT_PIXELS)
    assert counts["clear"] > 0.05 * counts["total"] and counts["solid"] > 0.2 * counts["total"]
    assert "Done" in page.inner_text("#status")
    assert page.is_hidden("#error")
    shot(page, "result", full_page=True)

    name, data = download(page, "#download", tmp_path)
    assert name == "astronaut-cutout.png"
    im = open_image(data)
    assert im.format == "PNG" and im.mode == "RGBA"
    assert im.getchannel("A").getextrema() == (0, 255)


def test_no_console_errors_and_the_icon_is_served(browser: Any, server: Server,
                                                  photo_path: Path, watch: Watch) -> None:
    # today's fix: the page names its icon (/ui/favicon.svg); /favicon.ico answered 404
    context = browser.new_context()
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    watch_page(page, server, watch)
    seen: list[str] = []
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}"))
    page.goto(server.url + "/")
    wait_for_options(page)
    upload_photo(page, photo_path)
    page.wait_for_timeout(300)
    assert page.get_attribute("link[rel=icon]", "href") == "/ui/favicon.svg"
    assert server.get("/ui/favicon.svg").headers["content-type"].startswith("image/svg+xml")
    assert not [s for s in seen if not s.startswith(("200 ", "304 "))], seen
    check_watch(page, watch)
    assert not watch.console
    context.close()


# --- Task A: the option controls come from GET /api/options ----------------------------------
def test_every_webui_option_row_has_its_control(page: Any, server: Server) -> None:
    rows = [r for r in server.get("/api/options").json()["options"] if r["webui"]]
    assert rows
    for row in rows:
        cid = "model" if row["type"] == "model" else f"opt-{row['name']}"
        control = page.locator(f"#{cid}")
        assert control.count() == 1, row["name"]
        tag, kind = control.evaluate("(e) => [e.tagName.toLowerCase(), e.type]")
        if row["type"] in ("model", "choice"):
            assert tag == "select", row["name"]
            values = control.evaluate("(e) => [...e.options].map((o) => o.value)")
            assert values == row["choices"], row["name"]
            assert control.input_value() == row["default"]
        elif row["type"] == "boolean":
            assert kind == "checkbox"
            assert control.is_checked() == bool(row["default"])
        elif row["type"] == "integer":
            assert kind == "number"
            assert control.get_attribute("min") == f"{row['minimum']:g}"
            assert control.get_attribute("max") == f"{row['maximum']:g}"
        elif row["type"] == "color":
            assert kind == "color"
            assert page.locator(f"#{cid}-on").evaluate("(e) => e.type") == "checkbox"
            assert control.is_disabled() == (row["default"] is None)
    # the matting thresholds wait in a collapsed <details> under "Alpha matting"
    details = page.locator("#opt-alpha_matting_foreground_threshold").locator(
        "xpath=ancestor::details")
    assert details.count() == 1 and details.get_attribute("open") is None
    # and none of them is written into the page itself
    html = (Path(__file__).parents[2] / "src/cleancut/server/webui/index.html").read_text()
    for row in rows:
        assert f'id="opt-{row["name"]}"' not in html and f'name="{row["field"]}"' not in html


def test_controls_are_sent_under_their_fields(page: Any, photo_path: Path) -> None:
    sent: list[dict[str, tuple[str | None, bytes]]] = []

    def capture(route: Any) -> None:
        sent.append(multipart(route.request))
        route.continue_()

    page.route("**/api/remove", capture)
    page.select_option("#model", "u2netp")
    page.check("#opt-only_mask")
    page.click("#more-alpha_matting > summary")
    page.fill("#opt-alpha_matting_erode_size", "7")
    page.click("#more-options > summary")
    page.check("#opt-bgcolor-on")
    page.fill("#opt-bgcolor", "#336699")
    upload_photo(page, photo_path)
    parts = sent[0]
    assert parts["file"][0] == "astronaut.jpg"
    assert parts["model"][1] == b"u2netp"
    assert parts["return_mask"][1] == b"true"  # the row's field, not its name (only_mask)
    assert "only_mask" not in parts
    assert parts["alpha_matting"][1] == b"false"
    assert parts["alpha_matting_erode_size"][1] == b"7"
    assert parts["bgcolor"][1] == b"#336699"
    assert parts["format"][1] == b"png"
    assert "quality" not in parts  # empty: the server's default
    assert "u2netp" in page.inner_text("#status")


def test_a_new_option_row_gets_a_control_without_a_new_page(
        browser: Any, server: Server, photo_path: Path, watch: Watch) -> None:
    # rows this page has never seen (a boolean with its own setting) and a fusion among the
    # models: for the page they are only rows of the table. The server ignores fields it does
    # not know, so the made-up ones can travel to it.
    table = server.get("/api/options").json()
    table["options"] += [
        {"name": "edge_glow", "field": "glow", "aliases": [], "type": "boolean",
         "label": "Edge glow", "help": "A made-up option.", "default": True, "webui": True},
        {"name": "edge_glow_radius", "field": "glow_radius", "aliases": [], "type": "integer",
         "label": "Glow radius", "help": "Its setting.", "default": 3, "minimum": 1,
         "maximum": 9, "webui": True},
        {"name": "hidden_one", "field": "hidden_one", "aliases": [], "type": "boolean",
         "label": "Not for the WebUI", "help": "", "default": False, "webui": False},
    ]
    model_row = next(r for r in table["options"] if r["type"] == "model")
    model_row["choices"].append("u2net+u2netp")
    context = browser.new_context()
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    watch_page(page, server, watch)
    page.route("**/api/options", lambda route: route.fulfill(json=table))
    sent: list[dict[str, tuple[str | None, bytes]]] = []

    def capture(route: Any) -> None:
        sent.append(multipart(route.request))
        route.continue_()

    page.route("**/api/remove", capture)
    page.goto(server.url + "/")
    wait_for_options(page)
    models = page.locator("#model option").evaluate_all("(os) => os.map((o) => o.value)")
    assert models == model_row["choices"] and models[-1] == "u2net+u2netp"
    assert page.is_checked("#opt-edge_glow")
    assert "Edge glow" in page.inner_text("#options")
    assert page.locator("#opt-hidden_one").count() == 0
    # the integer named after the boolean waits, collapsed, under it
    assert page.locator("#more-edge_glow #opt-edge_glow_radius").count() == 1
    page.uncheck("#opt-edge_glow")
    page.click("#more-edge_glow > summary")
    page.fill("#opt-edge_glow_radius", "5")
    upload_photo(page, photo_path)
    assert sent[0]["glow"][1] == b"false" and sent[0]["glow_radius"][1] == b"5"
    assert "edge_glow" not in sent[0]
    check_watch(page, watch)
    context.close()


@pytest.fixture(scope="module")
def u2netp_only(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A service whose model directory holds u2netp alone."""
    root = tmp_path_factory.mktemp("u2netp-only")
    models = root / "models"
    models.mkdir()
    for name in ("u2netp.onnx", "u2netp.json"):
        (models / name).symlink_to(model_dir / name)
    srv = start_server(models, root / "server.log", models="u2netp", default_model="u2netp",
                       workers="1")
    yield srv
    stop_server(srv)


def test_the_model_list_is_the_servers(browser: Any, u2netp_only: Server) -> None:
    # a server with only u2netp installed: the select offers exactly that, chosen
    context = browser.new_context()
    page = context.new_page()
    page.goto(u2netp_only.url + "/")
    wait_for_options(page)
    assert page.locator("#model option").evaluate_all("(os) => os.map((o) => o.value)") == [
        "u2netp"]
    assert page.input_value("#model") == "u2netp"
    context.close()


def test_options_mask_only_and_model_choice(page: Any, photo_path: Path,
                                            tmp_path: Path) -> None:
    page.wait_for_function("() => document.querySelectorAll('#model option').length >= 2")
    page.select_option("#model", "u2netp")
    page.check("#opt-only_mask")
    upload_photo(page, photo_path)
    assert "u2netp" in page.inner_text("#status")
    name, data = download(page, "#download", tmp_path)
    assert name == "astronaut-mask.png"
    assert open_image(data).mode == "L"


def test_server_background_colour_and_jpeg(page: Any, photo_path: Path, tmp_path: Path) -> None:
    page.click("#more-options > summary")
    page.check("#opt-bgcolor-on")
    page.fill("#opt-bgcolor", "#00ff00")
    page.select_option("#opt-format", "jpeg")
    upload_photo(page, photo_path)
    counts = page.evaluate(TRANSPARENT_PIXELS)
    assert counts["clear"] == 0
    name, data = download(page, "#download", tmp_path)
    assert name == "astronaut-cutout.jpg"
    assert open_image(data).format == "JPEG"


# --- errors, keyboard, paste, drop ----------------------------------------------------------
def test_a_text_file_shows_a_plain_error(page: Any, tmp_path: Path, watch: Watch) -> None:
    watch.expect("status of 415")  # the answer to a file that is not an image
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    message = page.inner_text("#error")
    assert "not an image" in message and "JPEG" in message
    assert "invalid_file_type" not in message  # plain words, not codes
    assert page.is_hidden("#results")
    assert page.get_attribute("#queue .item", "data-state") == "error"


def test_keyboard_only_use(page: Any, photo_path: Path, tmp_path: Path) -> None:
    # the file chooser opens from the keyboard: Tab to the drop zone, press Enter
    with page.expect_file_chooser() as chooser:
        page.focus("#file")
        page.keyboard.press("Enter")
    chooser.value.set_files(str(photo_path))
    wait_for_result(page)
    # options and the button are reachable and work from the keyboard
    page.focus("#opt-only_mask")
    page.keyboard.press("Space")
    assert page.is_checked("#opt-only_mask")
    page.focus("#run")
    page.keyboard.press("Enter")  # queued at once: wait_for_result waits for the new result
    wait_for_result(page)
    # the view answers keys: zoom in on the picture, move the divider, save
    before = zoom_percent(page)
    page.focus("#view")
    page.keyboard.press("+")
    assert zoom_percent(page) > before
    page.keyboard.press("0")
    assert zoom_percent(page) == before
    page.focus("#compare")
    page.keyboard.press("Space")
    page.focus("#divider")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#divider", "aria-valuenow") == "52"
    page.focus("#bg-none")
    page.keyboard.press("ArrowRight")  # radio group: the next background
    assert page.is_checked("#bg-white")
    page.focus("#download")
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    assert info.value.suggested_filename == "astronaut-mask.png"


def test_paste_an_image(page: Any, photo_path: Path, tmp_path: Path) -> None:
    page.evaluate("""(data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([bytes], 'pasted.jpg', {type: 'image/jpeg'}));
      document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: transfer}));
    }""", b64(photo_path))
    wait_for_result(page)
    assert download(page, "#download", tmp_path)[0] == "pasted-cutout.png"


def test_drop_an_image(page: Any, photo_path: Path, tmp_path: Path) -> None:
    page.evaluate(DROP_FILES, [["dropped.jpg", "image/jpeg", b64(photo_path)]])
    wait_for_result(page)
    assert download(page, "#download", tmp_path)[0] == "dropped-cutout.png"


# --- Task B.1: many photos, in order, one at a time; download all as a zip ---------------------
def test_three_photos_dropped_at_once_come_back_and_download_as_one_zip(
        page: Any, tmp_path: Path) -> None:
    photos = [INPUTS / n for n in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")]
    order: list[str] = []
    in_flight = [0, 0]  # now, most

    def started(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/remove"):
            in_flight[0] += 1
            in_flight[1] = max(in_flight)

    def capture(route: Any) -> None:  # a routed request carries its body
        order.append(multipart(route.request)["file"][0] or "")
        route.continue_()

    def ended(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/remove"):
            in_flight[0] -= 1

    page.route("**/api/remove", capture)
    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    drop_files(page, *photos)
    assert page.locator("#queue .item").count() == 3
    # the first is shown while the others wait their turn
    assert page.get_attribute("#queue .item:nth-child(1) .pick", "aria-current") == "true"
    shot(page, "queue")
    wait_for_all(page, 3)
    assert order == [p.name for p in photos]
    assert in_flight[1] == 1
    assert "3 done" in page.inner_text("#queue-summary")
    shot(page, "queue-done")

    name, data = download(page, "#download-all", tmp_path)
    assert name.endswith(".zip")
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None  # every member's CRC-32 checks
    assert archive.namelist() == ["astronaut-cutout.png", "chelsea-cutout.png",
                                  "coffee-cutout.png"]
    for member in archive.namelist():
        im = open_image(archive.read(member))
        assert im.format == "PNG" and im.mode == "RGBA", member
        assert im.getchannel("A").getextrema() == (0, 255), member


def test_a_busy_server_is_retried_after_retry_after(page: Any, photo_path: Path,
                                                    watch: Watch) -> None:
    watch.expect("status of 503")
    calls: list[str] = []

    def busy_once(route: Any) -> None:
        calls.append(route.request.method)
        if len(calls) == 1:
            route.fulfill(status=503, headers={"Retry-After": "1"}, json={
                "errors": [{"code": "overloaded", "title": "Overloaded",
                            "detail": "the queue is full; retry later"}],
                "request_id": "test"})
        else:
            route.continue_()

    page.route("**/api/remove", busy_once)
    page.set_input_files("#file", str(photo_path))
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".includes('retrying in 1 s')", timeout=30_000)
    assert "server busy" in page.inner_text("#status").lower()
    assert page.is_hidden("#error")
    wait_for_result(page)
    assert calls == ["POST", "POST"]
    counts = page.evaluate(TRANSPARENT_PIXELS)
    assert counts["clear"] > 0 and counts["solid"] > 0


def test_confidence_and_warnings_are_shown(page: Any, server: Server, photo_path: Path) -> None:
    upload_photo(page, photo_path)
    # the server's own X-Confidence
    assert re.fullmatch(r"Model confidence \d{1,3}%", page.inner_text("#confidence-text"))
    assert page.is_hidden("#warning")

    # the real answer for this photo, sent again with other headers
    real = server.post("/api/remove", files={"file": photo_path.read_bytes()})
    assert real.status_code == 200
    kept = {k: v for k, v in real.headers.items() if k.lower() in (
        "content-type", "content-disposition", "x-width", "x-height", "x-model")}

    # a fallback warning and a low confidence, as the pipeline may send them
    def low(route: Any) -> None:
        route.fulfill(status=200, body=real.content, headers={
            **kept, "X-Confidence": "0.312",
            "X-Cleancut-Warning": "alpha matting failed; the plain mask was used"})

    page.route("**/api/remove", low)
    page.click("#run")
    wait_for_result(page)
    assert "31%" in page.inner_text("#confidence")
    assert "check the edges" in page.inner_text("#confidence")
    assert page.is_visible("#warning")
    assert "alpha matting failed; the plain mask was used" in page.inner_text("#warning")
    shot(page, "warning")
    # an older server sends neither: nothing is shown for them
    page.unroute("**/api/remove")

    def plain(route: Any) -> None:
        route.fulfill(status=200, body=real.content, headers=kept)

    page.route("**/api/remove", plain)
    page.click("#run")
    wait_for_result(page)
    assert page.is_hidden("#confidence") and page.is_hidden("#warning")
    assert "Done" in page.inner_text("#status")


# --- Task B.2: compare, zoom and pan on the canvas ----------------------------------------------
def test_the_divider_changes_what_is_drawn(page: Any, photo_path: Path) -> None:
    upload_photo(page, photo_path)
    alone = canvas_pixels(page)
    page.check("#compare")
    half = canvas_pixels(page)
    width = half.shape[1]
    # the divider splits the same view: the original left of it, the result right of it
    assert np.abs(half[:, width // 2 + 5:] - alone[:, width // 2 + 5:]).max() == 0
    assert changed(half[:, : width // 2 - 5], alone[:, : width // 2 - 5]) > 0.1
    shot(page, "compare")
    # from the keyboard: ten steps of 2 % to the right
    page.focus("#divider")
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    assert page.get_attribute("#divider", "aria-valuenow") == "70"
    moved = canvas_pixels(page)
    band = slice(int(width * 0.52), int(width * 0.68))
    assert changed(moved[:, band], half[:, band]) > 0.05  # now the original there
    assert np.abs(moved[:, int(width * 0.72):] - half[:, int(width * 0.72):]).max() == 0
    # dragged with the mouse, back to 30 %
    knob = page.locator("#divider .knob").bounding_box()
    box = page.locator("#view").bounding_box()
    page.mouse.move(knob["x"] + knob["width"] / 2, knob["y"] + knob["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, knob["y"], steps=5)
    page.mouse.up()
    assert int(page.get_attribute("#divider", "aria-valuenow")) in (29, 30, 31)
    dragged = canvas_pixels(page)
    band = slice(int(width * 0.33), int(width * 0.48))
    assert np.abs(dragged[:, band] - alone[:, band]).max() == 0  # the result again


def test_zoom_to_400_percent_pan_and_fit(page: Any, photo_path: Path) -> None:
    upload_photo(page, photo_path)
    fitted = canvas_pixels(page)
    fit_percent = zoom_percent(page)
    while zoom_percent(page) < 400:
        page.click("#zoom-in")
    assert zoom_percent(page) == 400
    zoomed = canvas_pixels(page)
    assert changed(zoomed, fitted) > 0.5
    # 400 %: each pixel of the photo is a 4 × 4 block on the canvas (crisp, not smoothed)
    row = zoomed[zoomed.shape[0] // 2, :, :3]
    changes = np.flatnonzero(np.any(row[1:] != row[:-1], axis=1))
    runs = np.diff(changes)
    assert np.median(runs) == 4, runs[:40]
    shot(page, "zoom-400")
    # drag to pan: the same picture, moved by the drag
    box = page.locator("#view").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 40, cy + 24, steps=4)
    page.mouse.up()
    panned = canvas_pixels(page)
    assert np.abs(panned[30:-30, 40 + 30:-30] - zoomed[6:-54, 30:-40 - 30]).max() == 0
    # the wheel zooms out around the pointer; two pointers pinch
    page.mouse.wheel(0, 400)
    settle(page)
    assert zoom_percent(page) < 400
    page.click("#zoom-fit")
    assert zoom_percent(page) == fit_percent
    assert np.abs(canvas_pixels(page) - fitted).max() == 0
    page.evaluate("""() => {
      const c = document.getElementById('view');
      const box = c.getBoundingClientRect();
      const x = box.left + box.width / 2, y = box.top + box.height / 2;
      const ev = (type, id, dx) => c.dispatchEvent(new PointerEvent(type, {
        pointerId: id, pointerType: 'touch', clientX: x + dx, clientY: y, bubbles: true,
        isPrimary: id === 11}));
      ev('pointerdown', 11, -50); ev('pointerdown', 12, 50);
      ev('pointermove', 12, 150);  // the fingers twice as far apart
      ev('pointerup', 12, 150); ev('pointerup', 11, -50);
    }""")
    settle(page)
    assert abs(zoom_percent(page) - 2 * fit_percent) <= 1


# --- Task B.3: backgrounds, composited in the page ----------------------------------------------
def test_the_view_shows_a_checkerboard_white_or_black(page: Any, photo_path: Path) -> None:
    upload_photo(page, photo_path)
    # a patch of the photo the model removed (top right of the astronaut photo)
    x, y = to_screen(page, 440, 60)
    box = page.locator("#view").bounding_box()
    px, py = int(x - box["x"]), int(y - box["y"])
    patch = canvas_pixels(page)[py - 8:py + 8, px - 8:px + 8, :3]
    assert {255, 203} <= set(np.unique(patch))  # the two squares of the checkerboard
    page.check("#bg-white")
    assert (canvas_pixels(page)[py - 8:py + 8, px - 8:px + 8, :3] == 255).all()
    page.check("#bg-black")
    assert (canvas_pixels(page)[py - 8:py + 8, px - 8:px + 8, :3] == 0).all()


def test_a_colour_background_changes_the_download_without_a_new_request(
        page: Any, photo_path: Path, tmp_path: Path) -> None:
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    upload_photo(page, photo_path)
    assert len(posts) == 1
    _, plain = download(page, "#download", tmp_path)
    cutout = np.asarray(open_image(plain)).astype(int)
    clear = cutout[:, :, 3] == 0
    solid = cutout[:, :, 3] == 255

    page.fill("#bg-color", "#00ff00")  # the picker chooses "your colour"
    assert page.is_checked("#bg-custom")
    shot(page, "background-colour")
    assert page.input_value("#download-format") == "png"
    name, data = download(page, "#download", tmp_path)
    assert name == "astronaut-cutout.png"
    green = np.asarray(open_image(data).convert("RGBA")).astype(int)
    assert (green[:, :, 3] == 255).all()
    assert (green[clear][:, :3] == [0, 255, 0]).all()
    assert (green[solid][:, :3] == cutout[solid][:, :3]).all()

    page.select_option("#download-format", "jpeg")
    name, data = download(page, "#download", tmp_path)
    jpeg = open_image(data)
    assert name == "astronaut-cutout.jpg" and jpeg.format == "JPEG" and jpeg.mode == "RGB"
    assert np.abs(np.asarray(jpeg).astype(int)[clear] - [0, 255, 0]).mean() < 8

    # a background photo, scaled to cover
    page.set_input_files("#bg-file", str(INPUTS / "chelsea.jpg"))
    page.wait_for_function("() => document.getElementById('bg-photo').checked")
    shot(page, "background-photo")
    page.select_option("#download-format", "png")
    _, data = download(page, "#download", tmp_path)
    cat = np.asarray(open_image(data).convert("RGBA")).astype(int)
    assert (cat[:, :, 3] == 255).all()
    assert cat[clear][:, :3].std() > 20  # a photo behind, not a flat colour
    assert (cat[solid][:, :3] == cutout[solid][:, :3]).all()

    page.check("#bg-none")
    _, data = download(page, "#download", tmp_path)
    assert data == plain  # no background: the server's file as it came
    assert len(posts) == 1, posts  # not one more request to the server


# --- Task B.4: fixing a bad cut with brushes ---------------------------------------------------
def paint(page: Any, tool: str, points: list[tuple[float, float]]) -> None:
    page.check(f"#tool-{tool}")
    page.locator("#stage").scroll_into_view_if_needed()
    first = to_screen(page, *points[0])
    page.mouse.move(*first)
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*to_screen(page, *point), steps=6)
    page.mouse.up()


# a zigzag over the top right of the astronaut photo, which the model drops
KEEP_STROKE = [(400.0, 70.0), (470.0, 70.0), (470.0, 90.0), (400.0, 90.0), (400.0, 110.0),
               (470.0, 110.0), (470.0, 130.0), (400.0, 130.0)]
ERASE_STROKE = [(60.0, 470.0), (120.0, 470.0)]


def test_brush_strokes_send_a_hint_image_and_replace_the_result(page: Any,
                                                                photo_path: Path) -> None:
    upload_photo(page, photo_path)
    page.fill("#brush-size", "40")
    paint(page, "keep", KEEP_STROKE)
    paint(page, "erase", ERASE_STROKE)
    paint(page, "erase", [(250.0, 250.0)])
    assert page.is_enabled("#undo") and page.is_enabled("#apply")
    page.click("#undo")  # the last dab goes
    page.mouse.move(*to_screen(page, 300, 300))
    shot(page, "brush")
    sent: list[dict[str, tuple[str | None, bytes]]] = []

    def capture(route: Any) -> None:
        sent.append(multipart(route.request))
        route.continue_()

    page.route("**/api/remove", capture)
    page.click("#apply")
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('Fixes applied')", timeout=120_000)
    wait_for_result(page)
    filename, data = sent[0]["hints"]
    assert filename == "hints.png"
    hints = open_image(data)
    assert hints.format == "PNG" and hints.size == (512, 512)
    rgba = np.asarray(hints.convert("RGBA")).astype(int)
    # white where kept, black where erased, transparent elsewhere; nothing in between
    assert set(np.unique(rgba[:, :, 3])) == {0, 255}
    assert (rgba[70, 430] == [255, 255, 255, 255]).all()
    assert (rgba[470, 90] == [0, 0, 0, 255]).all()
    assert rgba[250, 250, 3] == 0 and rgba[300, 300, 3] == 0  # undone, and never painted
    assert rgba[10, 10, 3] == 0
    assert sent[0]["file"][0] == "astronaut.jpg"
    assert "Fixes applied" in page.inner_text("#status")


def test_a_keep_stroke_makes_a_dropped_region_opaque(page: Any, photo_path: Path) -> None:
    upload_photo(page, photo_path)
    alpha_at = """async (points) => {
      const img = document.querySelector('#queue .pick[aria-current="true"] img');
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      return points.map(([x, y]) => g.getImageData(x, y, 1, 1).data[3]);
    }"""
    inside = [(x, y) for x in range(410, 461, 10) for y in range(80, 121, 10)]
    assert max(page.evaluate(alpha_at, inside)) < 30  # the model dropped it
    page.fill("#brush-size", "60")
    paint(page, "keep", KEEP_STROKE)
    page.click("#apply")
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('Fixes applied')", timeout=120_000)
    wait_for_result(page)
    assert min(page.evaluate(alpha_at, inside)) > 200


# --- the layout on a phone, the API docs ----------------------------------------------------
def test_works_at_375_px(browser: Any, server: Server, photo_path: Path, watch: Watch) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True,
                                  has_touch=True)
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    watch_page(page, server, watch)
    page.goto(server.url + "/")
    wait_for_options(page)
    page.set_input_files("#file", [str(photo_path), str(INPUTS / "coffee.jpg")])
    wait_for_all(page, 2)
    # nothing wider than the screen: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = page.locator("#view").bounding_box()
    assert box["width"] <= 375 and box["height"] > 200
    for selector in ("#zoom-in", "#compare", "#tool-erase + span", "#apply", "#bg-file",
                     "#download", "#download-all", "#run"):
        control = page.locator(selector).bounding_box()
        assert control["x"] >= 0 and control["x"] + control["width"] <= 375, selector
    shot(page, "phone-375", full_page=True)
    check_watch(page, watch)
    context.close()


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


def test_the_server_answers_the_pages_static_files(server: Server) -> None:
    for path in ("/ui/app.js", "/ui/zip.js", "/ui/style.css", "/ui/favicon.svg"):
        assert requests.get(server.url + path, timeout=30).status_code == 200, path
