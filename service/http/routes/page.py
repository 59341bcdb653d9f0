"""The page at `/`: a person's way into the service (upload, methods, classes, overlays, feature visualization).

Static HTML, CSS and JavaScript from `service/http/page/` (no build step, nothing from a CDN), the colormaps the
overlays use (so the page re-blends a raw map with the service's own tables), a few sample photos from
scikit-image's data, and the labels of a model for the class type-ahead. Fixed names only: no path a client
makes up is ever opened.
"""

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.core.errors import AssetNotFound
from service.http.deps import API_KEY_REQUIRED, RuntimeDep
from service.http.routes.errors_doc import ERROR_RESPONSES
from service.imaging.encoding import COLORMAP_FILE

PAGE_DIR = Path(__file__).parents[1] / "page"
# ES modules: index.html loads app.js, which imports the others.
SCRIPTS = ("app.js", "answer.js", "api.js", "messages.js", "methods.js", "overlay.js", "visualize.js")
ASSETS = {
    **{name: (PAGE_DIR / name, "text/javascript") for name in SCRIPTS},
    "style.css": (PAGE_DIR / "style.css", "text/css"),
    "colormaps.json": (COLORMAP_FILE, "application/json"),
}
# Photos shipped in scikit-image's own package data (public domain or CC0; see skimage/data/README.txt).
SAMPLES = {
    "chelsea": ("chelsea.png", "image/png"),
    "coffee": ("coffee.png", "image/png"),
    "astronaut": ("astronaut.png", "image/png"),
    "rocket": ("rocket.jpg", "image/jpeg"),
}
NO_CACHE = {"Cache-Control": "no-cache"}
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""The page's Content Security Policy: its own scripts, styles and API only (no inline script, no other host);
images also from `data:` and `blob:` (the previews and overlays it draws)."""

router = APIRouter(include_in_schema=False)
labels_router = APIRouter(include_in_schema=False, dependencies=API_KEY_REQUIRED)


@router.get("/")
async def page() -> HTMLResponse:
    headers = NO_CACHE | {"Content-Security-Policy": PAGE_POLICY}
    return HTMLResponse((PAGE_DIR / "index.html").read_text(encoding="utf-8"), headers=headers)


@router.get("/page/{name}")
async def page_asset(name: str) -> FileResponse:
    """A script, style or the colormaps of the page.

    Raises:
        AssetNotFound: a name the page does not have.
    """
    if name not in ASSETS:
        raise AssetNotFound(f"no page asset '{name}'; assets: {', '.join(sorted(ASSETS))}")
    path, media_type = ASSETS[name]
    return FileResponse(path, media_type=media_type, headers=NO_CACHE)


@router.get("/page/samples/{name}")
async def sample_photo(name: str) -> Response:
    """A sample photo from scikit-image's package data.

    Raises:
        AssetNotFound: a name that is not a sample.
    """
    if name not in SAMPLES:
        raise AssetNotFound(f"no sample '{name}'; samples: {', '.join(SAMPLES)}")
    file_name, media_type = SAMPLES[name]
    data = resources.files("skimage").joinpath("data", file_name).read_bytes()
    return Response(data, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


@labels_router.get("/page/models/{model}/labels", responses={404: ERROR_RESPONSES[404]})
async def model_labels(model: str, runtime: RuntimeDep) -> list[str]:
    """The model's class labels in index order, for the page's class type-ahead."""
    return list(runtime.worker(model).model.labels.names)
