"""The page and the documentation pages in a real browser: Debian's Chromium driven by Playwright for Python,
against a real uvicorn process serving the built-in model (the tiny model for the API-key case).

No request may leave 127.0.0.1: every other host is blocked and recorded, and each test asserts none was
tried. Screenshots are kept in `$PAGE_ARTIFACTS_DIR` when it is set (else in the test's tmp_path), to be looked at.
"""

import base64
import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from tests.real_server import RealServer, real_server

pytestmark = pytest.mark.slow
CHROMIUM_NAMES = ("chromium", "chromium-browser")
KEY = "browser-key-0123456789abcdef"
UI_TIMEOUT_MS = 120_000  # the built-in model on a shared 2-core CPU; a request is never slower than its 30 s deadline
expect.set_options(timeout=UI_TIMEOUT_MS)


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("Chromium is not installed: `make test` installs Debian's `chromium` (TEST_SYSTEM_PACKAGES)")


@pytest.fixture(scope="module")
def server() -> Iterator[RealServer]:
    with real_server({}, module="service") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ["PAGE_ARTIFACTS_DIR"]) if os.environ.get("PAGE_ARTIFACTS_DIR") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Offline:
    """A browser context that lets only loopback requests through and records the rest."""

    def __init__(self, browser: Browser, **context_args: object) -> None:
        self.context = browser.new_context(**context_args)
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.blocked: list[str] = []
        self.requests: list[str] = []
        self.errors: list[str] = []  # uncaught exceptions of the page's scripts
        self.refused: list[str] = []  # what the service's Content Security Policy refused of the page's own
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in ("127.0.0.1",) or url.startswith(("data:", "blob:")):
            self.requests.append(f"{route.request.method} {urlsplit(url).path}")
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def page(self) -> Page:
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        """A refusal by the policy of another host's resource is the policy at work (ReDoc's attribution logo on
        Redocly's CDN); any other refusal (an inline script, the service's own files) breaks the page."""
        if "Content Security Policy" not in message.text:
            return
        url = re.search(r"'(https?://[^']+)'", message.text)
        if url is None or urlsplit(url.group(1)).hostname == "127.0.0.1":
            self.refused.append(message.text)


@pytest.fixture
def offline(browser: Browser) -> Iterator[Offline]:
    context = Offline(browser, viewport={"width": 1280, "height": 1000})
    yield context
    context.context.close()
    assert context.blocked == [], f"requests left 127.0.0.1: {context.blocked}"
    assert context.errors == [], f"the page's scripts failed: {context.errors}"
    assert context.refused == [], f"the Content Security Policy refused: {context.refused}"


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def canvas_png(page: Page, index: int) -> np.ndarray:
    url = page.get_by_test_id("overlay").nth(index).evaluate("canvas => canvas.toDataURL('image/png')")
    return png_array(base64.b64decode(url.split(",", 1)[1]))


def overlay_pixels(page: Page, index: int = 0) -> list[int]:
    return page.evaluate(
        """i => {
            const canvas = document.querySelectorAll('[data-testid="overlay"]')[i];
            return Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
                .filter((_, k) => k % 97 === 0));
        }""",
        index,
    )


def test_a_photo_is_explained_into_a_grid_of_overlays_that_reblend_in_the_browser(server, offline, cat_jpeg, artifacts):
    page = offline.page()
    page.goto(server.url + "/")
    grad_cam_pp = page.locator("input[name=method][value=grad_cam_pp]")  # its label also names Smooth Grad-CAM++
    expect(grad_cam_pp).to_be_enabled()
    page.get_by_test_id("image-input").set_input_files(
        {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": cat_jpeg}
    )
    expect(page.locator("#preview")).to_be_visible()
    grad_cam_pp.check()  # with the defaults CAM and Grad-CAM: three methods
    for label in ("tabby", "Egyptian cat"):
        page.get_by_label("Class label or index").fill(label)
        page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_test_id("explain-button").click()

    overlays = page.get_by_test_id("overlay")
    expect(overlays).to_have_count(6)  # one row per class, one column per method
    expect(page.get_by_test_id("top-class")).to_have_count(5)
    expect(page.get_by_test_id("top-class").first).to_contain_text("cat")
    expect(page.locator("#grid th[scope=row]")).to_have_text(["tabby, tabby cat", "Egyptian cat"])
    expect(page.locator("#grid th[scope=col]")).to_have_text(["CAM", "Grad-CAM", "Grad-CAM++"])
    expect(page.locator("#timings")).to_contain_text("inference")
    page.screenshot(path=str(artifacts / "page-explained.png"), full_page=True)

    # The browser's blend is the service's: the same overlay as the service draws (the photo is under 512 px,
    # so neither side resizes it; only the two JPEG decoders may differ by a level here and there).
    drawn = canvas_png(page, 0)
    served = httpx.post(
        f"{server.url}/v1/models/efficientnet_lite0/explain",
        files={"image": cat_jpeg},
        data={"method": "cam", "class": "tabby", "include": "overlay"},
        timeout=60,
    ).json()["explanations"][0]["overlay_png"]
    difference = np.abs(drawn.astype(int) - png_array(base64.b64decode(served)).astype(int))
    assert drawn.shape == (300, 451, 3) and difference.mean() < 1.5, difference.mean()

    explains = [r for r in offline.requests if r.endswith("/explain")]
    assert explains == ["POST /v1/models/efficientnet_lite0/explain"]  # the page's own
    before = overlay_pixels(page)
    page.get_by_label("Opacity").fill("0.9")
    expect(page.locator("#opacity-value")).to_have_text("0.90")
    after = overlay_pixels(page)
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert changed > len(before) // 4, "the opacity did not re-blend the overlay"
    page.get_by_label("Colormap").select_option("viridis")
    assert overlay_pixels(page) != after
    assert [r for r in offline.requests if r.endswith("/explain")] == explains  # no new request for either

    overlays.first.hover()  # the centre
    expect(page.locator("#hover")).to_contain_text("raw map [3, 3]")  # the 7 x 7 grid's centre
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the CAM overlay for tabby, tabby cat").click()
    assert download.value.suggested_filename == "cam-tabby_tabby_cat.png"
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.screenshot(path=str(artifacts / "page-reblended.png"), full_page=True)


def test_a_file_that_is_not_an_image_gets_a_message_in_words(server, offline):
    page = offline.page()
    page.goto(server.url + "/")
    page.get_by_test_id("image-input").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image at all"}
    )
    page.get_by_test_id("explain-button").click()
    message = page.get_by_role("alert")
    expect(message).to_be_visible()
    expect(message).to_contain_text("not an image the service can read")
    expect(page.get_by_test_id("overlay")).to_have_count(0)


DROP_OR_PASTE = """([kind, b64]) => {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], kind + '.jpg', {type: 'image/jpeg'}));
    if (kind === 'dropped') {
        document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
    } else {
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true}));
    }
}"""


def test_an_image_can_be_dropped_or_pasted(server, offline, cat_jpeg):
    page = offline.page()
    page.goto(server.url + "/")
    encoded = base64.b64encode(cat_jpeg).decode()
    page.evaluate(DROP_OR_PASTE, ["dropped", encoded])
    expect(page.locator("#drop-hint")).to_contain_text("dropped.jpg")
    expect(page.locator("#preview")).to_be_visible()
    page.evaluate(DROP_OR_PASTE, ["pasted", encoded])
    expect(page.locator("#drop-hint")).to_contain_text("pasted image")


def test_a_sample_photo_and_the_keyboard_alone_give_top_classes(server, offline):
    page = offline.page()
    page.goto(server.url + "/")
    page.get_by_role("button", name="coffee").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#preview")).to_be_visible()
    page.get_by_label("Draw the localization box").focus()
    page.keyboard.press("Space")
    expect(page.get_by_label("Draw the localization box")).to_be_checked()
    expect(page.get_by_test_id("explain-button")).to_be_enabled()  # once the catalogue is loaded
    page.get_by_test_id("explain-button").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("top-class")).to_have_count(5)
    expect(page.get_by_test_id("top-class").first).to_contain_text("%")
    expect(page.get_by_test_id("overlay")).to_have_count(6)  # CAM and Grad-CAM for the top 3 classes
    page.get_by_test_id("overlay").first.focus()
    expect(page.locator("#hover")).to_contain_text("peak of the raw map")
    drawn = canvas_png(page, 0)
    box_colour = np.all(drawn == (0, 255, 102), axis=-1)  # the box's stroke, a colour no colormap has
    assert box_colour.sum() > 4 * min(drawn.shape[:2]), "the localization box was not drawn"


def test_a_feature_visualization_shows_live_progress_and_its_image(server, offline, artifacts):
    page = offline.page()
    page.goto(server.url + "/")
    page.get_by_role("tab", name="Feature visualization").click()
    expect(page.get_by_test_id("explain-button")).to_be_hidden()  # one panel at a time
    expect(page.get_by_role("tab", name="Feature visualization")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#vis-model")).to_have_text("efficientnet_lite0")
    page.get_by_label("Class", exact=True).fill("flamingo")
    page.get_by_label("Steps").fill("6")
    page.get_by_test_id("visualize-button").click()
    expect(page.get_by_test_id("visualization")).to_be_visible()
    expect(page.locator("#vis-progress-text")).to_have_text("6 / 6")
    assert page.get_by_test_id("progress").evaluate("p => p.value") == 6
    page.screenshot(path=str(artifacts / "page-visualization.png"), full_page=True)


def test_a_feature_visualization_can_be_cancelled(server, offline):
    page = offline.page()
    page.goto(server.url + "/")
    page.get_by_role("tab", name="Feature visualization").click()
    page.get_by_label("Steps").fill("1000")  # 3 per step: within the service's cost bound of 4096
    page.get_by_test_id("visualize-button").click()
    expect(page.get_by_test_id("progress")).not_to_have_js_property("value", 0)  # live progress arrived
    page.get_by_test_id("cancel-button").click()
    expect(page.locator("#vis-status")).to_contain_text("cancelled")
    expect(page.get_by_test_id("visualize-button")).to_be_enabled()
    assert page.get_by_test_id("progress").evaluate("p => p.value") < 1000


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_documentation_renders_without_internet(server, offline, artifacts, path):
    page = offline.page()
    page.goto(server.url + path)
    if path == "/docs":
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        expect(page.locator(".swagger-ui")).to_contain_text("/v1/models/{model}/explain")
    else:
        # ReDoc's bundle, served by the service, ran and drew the operations (not its error page).
        expect(
            page.locator("[data-section-id='operation/explain_v1_models__model__explain_post']").first
        ).to_be_attached()
        expect(page.get_by_text("Something went wrong")).to_have_count(0)
    page.screenshot(path=str(artifacts / f"docs{path.replace('/', '-')}.png"))


def test_the_page_is_readable_on_a_375_px_phone(server, browser, cat_jpeg, artifacts):
    phone = Offline(browser, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = phone.page()
    page.goto(server.url + "/")
    page.get_by_test_id("image-input").set_input_files(
        {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": cat_jpeg}
    )
    page.get_by_test_id("explain-button").click()
    expect(page.get_by_test_id("overlay")).to_have_count(6)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways"
    for testid in ("image-input", "explain-button"):
        box = page.get_by_test_id(testid).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    overlay = page.get_by_test_id("overlay").first.bounding_box()
    assert overlay["width"] >= 200  # big enough to see on a phone
    page.screenshot(path=str(artifacts / "page-375px.png"), full_page=True)
    phone.context.close()
    assert phone.blocked == [] and phone.refused == []


def test_an_api_key_field_appears_on_401_and_the_key_is_kept_for_the_session(browser, cat_jpeg):
    with real_server({"api_keys": KEY, "max_body_bytes": "4096"}) as keyed:  # the tiny model
        context = Offline(browser)
        page = context.page()
        page.goto(keyed.url + "/")
        key_field = page.get_by_label("API key")
        expect(key_field).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("needs an API key")
        key_field.fill(KEY)
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("#model option")).to_have_count(1)
        expect(page.get_by_role("alert")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('explain.apiKey')") == KEY
        assert page.evaluate("localStorage.length") == 0
        page.reload()
        expect(page.locator("#model option")).to_have_count(1)  # the same tab keeps it
        page.get_by_test_id("image-input").set_input_files(
            {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": cat_jpeg}
        )
        page.get_by_test_id("explain-button").click()
        expect(page.get_by_role("alert")).to_contain_text("too large")
        expect(page.get_by_role("alert")).to_contain_text("4096 bytes")  # the limit, in the service's words
        context.context.close()
        assert context.blocked == []


def test_a_busy_service_says_when_to_retry(browser, noise_png):
    settings = {"max_queue": "1", "max_batch_size": "1"}
    with real_server(settings, forward_s=8.0) as busy, ThreadPoolExecutor(2) as pool:  # the tiny model
        context = Offline(browser)
        page = context.page()
        page.goto(busy.url + "/")
        expect(page.locator("#model option")).to_have_count(1)

        def hold() -> Future:
            return pool.submit(httpx.post, f"{busy.url}/v1/models/tiny/explain", files={"image": noise_png}, timeout=60)

        holders = [hold()]  # one in the worker (8 s), then one in the queue: the queue is full until it ends
        deadline = time.monotonic() + 30
        while busy.metrics().get('explain_queue_depth{model="tiny"}', 0) < 1:
            assert time.monotonic() < deadline, "the queue did not fill"
            if len(holders) == 1 or holders[-1].done():  # refused while the first was still queued: again
                time.sleep(0.2)
                holders.append(hold())
            time.sleep(0.05)
        page.get_by_test_id("image-input").set_input_files(
            {"name": "noise.png", "mimeType": "image/png", "buffer": noise_png}
        )
        page.get_by_test_id("explain-button").click()
        expect(page.get_by_role("alert")).to_contain_text("busy")
        expect(page.get_by_role("alert")).to_contain_text("Try again in 1 s")  # the service's Retry-After
        assert holders[0].result().status_code == 200 and holders[-1].result().status_code == 200
        context.context.close()
        assert context.blocked == [] and context.errors == []


def test_slow_methods_run_as_a_job_with_live_progress(browser, noise_png):
    with real_server({}) as tiny:  # the tiny model: occlusion is fast, but it is still many passes
        context = Offline(browser)
        page = context.page()
        page.goto(tiny.url + "/")
        page.locator("#method-cam").uncheck()  # the defaults
        page.locator("#method-grad_cam").uncheck()
        page.get_by_label("Occlusion").check()
        page.get_by_test_id("image-input").set_input_files(
            {"name": "noise.png", "mimeType": "image/png", "buffer": noise_png}
        )
        page.get_by_test_id("explain-button").click()
        expect(page.get_by_test_id("overlay")).to_have_count(3)  # occlusion for the top 3 classes
        expect(page.locator("#status")).to_contain_text("Done")
        explains = [r for r in context.requests if "/explain" in r or "/v1/jobs/" in r]
        assert explains[0] == "POST /v1/models/tiny/explain" and explains[1].endswith("/events"), explains
        context.context.close()
        assert context.blocked == [] and context.errors == []


def test_a_multilabel_model_shows_the_labels_it_predicts(browser, cat_jpeg, tmp_path, artifacts):
    """A seeded multilabel ResNet-18 from a store manifest: the bars are the labels that reach the threshold."""
    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None, num_classes=20).state_dict(), tmp_path / "tags.pth")
    (tmp_path / "tags.toml").write_text(
        'name = "tags"\nsource = "torchvision:resnet18"\nweights = "tags.pth"\ntask = "multilabel"\n'
        'num_classes = 20\ndefault_layer = "layer4"\nclassifier_layer = "fc"\n'
    )
    with real_server({"model_store_dir": str(tmp_path), "models": "tags"}, module="service") as tags:
        predicted = httpx.post(f"{tags.url}/v1/models/tags/predict", files={"image": cat_jpeg}, timeout=60).json()
        positives = [c["label"] for c in predicted["positive_classes"]]
        assert positives, "the seeded model should predict some labels"
        context = Offline(browser, viewport={"width": 1280, "height": 1000})
        try:
            page = context.page()
            page.goto(tags.url + "/")
            page.get_by_test_id("image-input").set_input_files(
                {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": cat_jpeg}
            )
            expect(page.get_by_test_id("explain-button")).to_be_enabled()
            page.get_by_test_id("explain-button").click()
            expect(page.locator("#classes-title")).to_contain_text("Predicted labels")
            expect(page.get_by_test_id("top-class")).to_have_count(len(positives))
            expect(page.locator("#grid th[scope=row]")).to_have_text(positives[:3])  # the page asks for top_k=3
            page.screenshot(path=str(artifacts / "page-multilabel.png"), full_page=True)
            assert context.blocked == [] and context.errors == [] and context.refused == []
        finally:
            context.context.close()


def test_segmentation_embedding_and_detection_models_show_their_own_answers(browser, cat_jpeg, tmp_path, artifacts):
    """A seeded LRASPP: its classes' shares with their colours, the mask, a map per class. A seeded embedding
    ResNet-18: the reference image asked for, the similarity, a map of it (no classes). A seeded Faster R-CNN:
    its detections with their scores, a map per detection with the box drawn."""
    from tests.api import test_detection, test_embedding, test_segmentation

    test_segmentation.write_store(tmp_path)
    test_detection.write_store(tmp_path, Image.open(io.BytesIO(cat_jpeg)))
    test_embedding.write_store(tmp_path)
    with real_server({"model_store_dir": str(tmp_path), "models": "scenes,faces,boxes"}, module="service") as tasks:
        predicted = httpx.post(f"{tasks.url}/v1/models/scenes/predict", files={"image": cat_jpeg}, timeout=60).json()
        shares = predicted["segmentation"]["classes"]
        context = Offline(browser, viewport={"width": 1280, "height": 1000})
        try:
            page = context.page()
            page.goto(tasks.url + "/")
            page.get_by_test_id("image-input").set_input_files(
                {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": cat_jpeg}
            )
            page.select_option("#model", "scenes")
            expect(page.get_by_test_id("explain-button")).to_be_enabled()
            expect(page.get_by_test_id("reference-input")).to_be_hidden()
            page.get_by_test_id("explain-button").click()
            expect(page.locator("#classes-title")).to_contain_text("share of the pixels")
            expect(page.get_by_test_id("top-class")).to_have_count(len(shares))
            expect(page.get_by_test_id("top-class").first).to_contain_text(f"{100 * shares[0]['share']:.1f} %")
            expect(page.get_by_test_id("segmentation-mask")).to_be_visible()
            expect(page.locator("#grid th[scope=row]")).to_have_text([c["label"] for c in shares[:3]])
            page.screenshot(path=str(artifacts / "page-segmentation.png"), full_page=True)

            page.select_option("#model", "faces")
            expect(page.get_by_test_id("reference-input")).to_be_visible()
            expect(page.locator("#classes-box")).to_be_hidden()
            page.get_by_test_id("explain-button").click()
            expect(page.locator("#message")).to_contain_text("choose a reference image")
            mirrored = Image.open(io.BytesIO(cat_jpeg)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            page.get_by_test_id("reference-input").set_input_files(
                {"name": "mirrored.png", "mimeType": "image/png", "buffer": png_bytes(mirrored)}
            )
            page.get_by_test_id("explain-button").click()
            expect(page.locator("#classes-title")).to_contain_text("Similarity to the reference image: 0.")
            expect(page.get_by_test_id("segmentation-mask")).to_be_hidden()
            expect(page.locator("#grid th[scope=row]")).to_have_text(["similarity"])
            expect(page.get_by_test_id("overlay")).to_have_count(1)
            page.get_by_test_id("overlay").focus()
            expect(page.locator("#hover")).to_contain_text("grad_cam, similarity: peak of the raw map")
            page.screenshot(path=str(artifacts / "page-embedding.png"), full_page=True)

            detected = httpx.post(f"{tasks.url}/v1/models/boxes/predict", files={"image": cat_jpeg}, timeout=60).json()
            names = [f"#{d['index']} {d['class']['label']}" for d in detected["detections"]]
            assert names, "the seeded detector should find a box above the default score"
            page.select_option("#model", "boxes")
            expect(page.locator("#classes-box")).to_be_hidden()
            page.get_by_test_id("explain-button").click()
            expect(page.locator("#classes-title")).to_contain_text("Detections")
            expect(page.get_by_test_id("top-class")).to_have_count(len(names))
            expect(page.locator("#grid th[scope=row]")).to_have_text(names)
            box = detected["detections"][0]["box"]
            x, y = page.get_by_test_id("overlay").first.evaluate(
                f"""(canvas) => {{
                  const s = canvas.width / {Image.open(io.BytesIO(cat_jpeg)).width};
                  return [Math.floor({box[0]} * s), Math.round(({box[1]} + {box[3]}) / 2 * s)];
                }}"""
            )
            pixel = page.get_by_test_id("overlay").first.evaluate(
                f"(canvas) => Array.from(canvas.getContext('2d').getImageData({x}, {y}, 1, 1).data)"
            )
            assert pixel == [255, 255, 255, 255]  # the box's white outline, 2 px wide around x0: its pixel floor(x0)
            # The letterboxed detector's map covers the photo's part only: the browser draws it as the service does.
            served = httpx.post(
                f"{tasks.url}/v1/models/boxes/explain",
                files={"image": cat_jpeg},
                data={"method": "grad_cam", "detection": 0, "include": "overlay"},
                timeout=60,
            ).json()["explanations"][0]["overlay_png"]
            difference = np.abs(canvas_png(page, 0).astype(int) - png_array(base64.b64decode(served)).astype(int))
            assert difference.mean() < 1.5, difference.mean()
            page.screenshot(path=str(artifacts / "page-detection.png"), full_page=True)
            assert context.blocked == [] and context.errors == [] and context.refused == []
        finally:
            context.context.close()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
