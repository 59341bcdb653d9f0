"""A real server process (the tiny model) shared by the client's tests, and test images."""

from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.real_server import RealServer, real_server

API_KEY = "client-test-key-0123456789"


@pytest.fixture(scope="package")
def server() -> Iterator[RealServer]:
    with real_server({}) as running:
        yield running


@pytest.fixture(scope="package")
def keyed_server() -> Iterator[RealServer]:
    with real_server({"api_keys": API_KEY}) as running:
        yield running


def photo(width: int = 60, height: int = 40, seed: int = 0) -> Image.Image:
    """A seeded RGB picture (not square, so that orientation mistakes show)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)
