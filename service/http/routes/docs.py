"""The documentation pages, `/docs` (Swagger UI) and `/redoc`, with their scripts and styles served by the
service itself: they work without internet, where FastAPI's defaults load them from a CDN.

The assets are the ones the PyPI package `fastapi-offline` ships (Swagger UI 5, ReDoc 2), read from its
installed folder; nothing is copied into this repository. A fixed set of names is served, never a path a
client makes up.
"""

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from service.core.errors import AssetNotFound

ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
ASSETS_PATH = "/docs/assets"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
CACHE = {"Cache-Control": "public, max-age=86400"}
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def with_policy(page: HTMLResponse) -> HTMLResponse:
    """The documentation page with its Content Security Policy: scripts from the service and the page's own
    inline script (by its hash), styles inline too (both UIs inject them), images also as `data:` (ReDoc's
    attribution logo would otherwise come from Redocly's CDN), nothing from any other host, never framed."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page.body.decode())
    ]
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {' '.join(hashes)}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    return page


router = APIRouter(include_in_schema=False)


def _asset_url(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=f"{request.scope.get('root_path', '')}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=_asset_url(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset_url(request, "swagger-ui.css"),
        swagger_favicon_url=_asset_url(request, "favicon.png"),
        oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    return with_policy(page)


@router.get(OAUTH2_REDIRECT_PATH)
async def swagger_ui_redirect() -> HTMLResponse:
    return with_policy(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    app = request.app
    page = get_redoc_html(
        openapi_url=f"{request.scope.get('root_path', '')}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=_asset_url(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset_url(request, "favicon.png"),
        with_google_fonts=False,
    )
    return with_policy(page)


@router.get(ASSETS_PATH + "/{name}")
async def docs_asset(name: str) -> FileResponse:
    """One of the documentation pages' assets, by its fixed name.

    Raises:
        AssetNotFound: any other name.
    """
    if name not in ASSETS:
        raise AssetNotFound(f"no documentation asset '{name}'; assets: {', '.join(sorted(ASSETS))}")
    return FileResponse(ASSETS_DIR / name, media_type=ASSETS[name], headers=CACHE)
