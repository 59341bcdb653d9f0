"""The page's routes and the offline documentation pages, in-process: what they serve, by fixed names only,
with nothing loaded from another host, and which of them need the API key when keys are on."""

import io
import re

import pytest
from PIL import Image

from service.http.routes.page import SAMPLES
from service.imaging.encoding import colormap_names
from tests.api.test_errors import assert_error
from tests.tiny_models import tiny_loaded

pytestmark = pytest.mark.anyio
KEY = "page-key-0123456789abcdef"
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture
def models():
    return {"tiny": tiny_loaded()}


async def test_the_page_is_served_at_the_root_with_its_script_and_style(serve, models):
    async with serve(models) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for testid in ("image-input", "explain-button"):
            assert f'data-testid="{testid}"' in page.text
        assert not EXTERNAL.search(page.text)  # nothing from a CDN
        pending = re.findall(r'(?:src|href)="(/page/[^"]+)"', page.text)
        served = set()
        while pending:  # the page's files, and the modules its scripts import
            src = pending.pop()
            asset = await client.get(src)
            assert asset.status_code == 200, src
            assert asset.content
            served.add(src)
            if src.endswith(".js"):
                assert asset.headers["content-type"].startswith("text/javascript")
                assert not EXTERNAL.search(asset.text) and "http://" not in asset.text and "https://" not in asset.text
                imports = re.findall(r'from "\./([\w.]+)"', asset.text)
                pending += [f"/page/{name}" for name in imports if f"/page/{name}" not in served]
        modules = {f"/page/{name}" for name in ("app.js", "answer.js", "methods.js", "overlay.js", "style.css")}
        assert modules <= served


async def test_the_page_gets_the_services_own_colormaps(serve, models):
    async with serve(models) as client:
        answer = await client.get("/page/colormaps.json")
    tables = answer.json()
    assert sorted(tables) == sorted(colormap_names())
    assert all(len(bytes.fromhex(table)) == 256 * 3 for table in tables.values())


@pytest.mark.parametrize("name", ["index.html", "..%2Fapp.py", "%2e%2e", "evil.js"])
async def test_only_the_pages_own_assets_are_served(serve, models, name):
    async with serve(models) as client:
        answer = await client.get(f"/page/{name}")
    assert_error(answer, 404, "not_found")


async def test_sample_photos_are_real_images_the_service_explains(serve, models):
    async with serve(models) as client:
        for name in SAMPLES:
            photo = await client.get(f"/page/samples/{name}")
            assert photo.status_code == 200
            image = Image.open(io.BytesIO(photo.content))
            assert min(image.size) >= 256 and image.mode == "RGB"
        explained = await client.post("/v1/models/tiny/explain", files={"image": photo.content})
        assert explained.status_code == 200
        assert_error(await client.get("/page/samples/moon"), 404, "not_found")


async def test_labels_for_the_type_ahead_are_the_models_in_index_order(serve, models):
    async with serve(models) as client:
        labels = (await client.get("/page/models/tiny/labels")).json()
        assert labels == list(models["tiny"].labels.names)
        assert_error(await client.get("/page/models/nope/labels"), 404, "model_not_found")


async def test_with_keys_on_the_page_and_docs_stay_open_but_labels_need_a_key(serve, models):
    async with serve(models, api_keys=KEY) as client:
        for path in ("/", "/page/app.js", "/page/colormaps.json", "/page/samples/coffee", "/docs", "/redoc"):
            assert (await client.get(path)).status_code == 200, path
        assert_error(await client.get("/page/models/tiny/labels"), 401, "missing_api_key")
        keyed = await client.get("/page/models/tiny/labels", headers={"X-API-Key": KEY})
        assert keyed.status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_documentation_pages_load_their_assets_from_the_service(serve, models, path):
    async with serve(models) as client:
        page = await client.get(path)
        assert page.status_code == 200
        assert not EXTERNAL.search(page.text), "a documentation page loads something from another host"
        assets = re.findall(r"""(?:src|href)\s*=\s*["'](/docs/assets/[^"']+)["']""", page.text)
        assert assets
        for src in assets:
            asset = await client.get(src)
            assert asset.status_code == 200 and len(asset.content) > 1000, src
        assert (await client.get("/openapi.json")).status_code == 200
        assert_error(await client.get("/docs/assets/openapi.yaml"), 404, "not_found")


async def test_swagger_ui_oauth2_redirect_is_served(serve, models):
    async with serve(models) as client:
        answer = await client.get("/docs/oauth2-redirect")
    assert answer.status_code == 200 and "oauth2" in answer.text.lower()
