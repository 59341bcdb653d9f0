import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

from model_store import LoadedModel, ModelStore
from service.core.settings import Settings
from service.http.app import create_app

# Property-based tests stay bounded in the suite; `pytest --hypothesis-profile=long` runs them 20 times longer.
settings.register_profile("suite", max_examples=150, deadline=None)
settings.register_profile("long", max_examples=3000, deadline=None)
settings.load_profile("suite")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def builtin_model() -> LoadedModel:
    return ModelStore.discover().load("efficientnet_lite0", torch.device("cpu"))


@pytest.fixture(scope="session")
def cat_photo() -> Image.Image:
    """A real photograph no one here made: scikit-image's 'chelsea' (a tabby cat)."""
    from skimage import data

    return Image.fromarray(data.chelsea())


def image_bytes(image: Image.Image, fmt: str = "JPEG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def cat_jpeg(cat_photo: Image.Image) -> bytes:
    return image_bytes(cat_photo)


@pytest.fixture
def noise_png() -> bytes:
    rng = np.random.default_rng(0)
    return image_bytes(Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)), "PNG")


@asynccontextmanager
async def serve_in_process(models: dict[str, LoadedModel], **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """An app with these models, its lifespan running, and an httpx client talking to it in-process."""
    app = create_app(Settings(models=list(models), **settings), models=models)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]  # tests may reach the app's state
            yield client


@pytest.fixture
def serve() -> Callable[..., object]:
    return serve_in_process
