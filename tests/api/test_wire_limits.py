"""The byte limit on the wire: a real uvicorn process (tiny model) and raw sockets, so the client can lie in
Content-Length or leave it out, which an HTTP client library would not do."""

import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import image_bytes
from tests.real_server import real_server

pytestmark = pytest.mark.slow
LIMIT = 2048
EXPLAIN = b"POST /v1/models/tiny/explain HTTP/1.1\r\nHost: test\r\n"


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with real_server({"max_body_bytes": str(LIMIT)}) as server:
        yield server.port


def first_response(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection; read the first response: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            assert chunk, f"connection closed after {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = connection.recv(65536)
            assert chunk, "connection closed inside the body"
            body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def assert_wire_error(response: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got_status, headers, body = response
    assert got_status == status, body
    error = httpx.Response(got_status, content=body).json()["error"]
    assert error["code"] == code and error["request_id"] == headers["x-request-id"], error


def assert_still_serving(port: int) -> None:
    small = image_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)), "PNG")
    assert len(small) < LIMIT // 2
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/readyz").status_code == 200
    response = httpx.post(f"{base}/v1/models/tiny/explain", files={"image": small}, timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("content_type", [b"image/png", b"application/json", b"multipart/form-data; boundary=x"])
def test_a_declared_length_over_the_limit_is_413_before_any_body_is_sent(port, content_type):
    request = EXPLAIN + b"Content-Type: " + content_type + b"\r\nContent-Length: 50000000\r\n\r\n"
    assert_wire_error(first_response(port, request), 413, "payload_too_large")
    assert_still_serving(port)


def test_bytes_past_a_short_content_length_never_reach_the_app(port):
    """The client declares 1000 bytes and sends 3x the limit: the app gets 1000 bytes (a truncated PNG, 422).
    The rest is read as the next request, which uvicorn answers 400 in plain text and closes."""
    image = image_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)), "PNG")
    assert len(image) > 3 * LIMIT
    request = EXPLAIN + b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n" + image
    assert_wire_error(first_response(port, request), 422, "invalid_image")
    assert_still_serving(port)


@pytest.mark.parametrize("content_type", [b"image/png", b"application/json", b"multipart/form-data; boundary=x"])
def test_a_chunked_body_without_content_length_is_counted_and_413_at_the_limit(port, content_type):
    chunks = b"".join(b"200\r\n" + b"\x00" * 0x200 + b"\r\n" for _ in range(4 * LIMIT // 0x200)) + b"0\r\n\r\n"
    request = EXPLAIN + b"Content-Type: " + content_type + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    assert_wire_error(first_response(port, request), 413, "payload_too_large")
    assert_still_serving(port)


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        (b"image/png", 422, "invalid_image"),
        (b"application/json", 400, "invalid_json"),
        (b"multipart/form-data; boundary=x", 400, "missing_image"),
    ],
)
def test_no_length_and_no_chunking_is_an_empty_body(port, content_type, status, code):
    request = EXPLAIN + b"Content-Type: " + content_type + b"\r\n\r\n"
    assert_wire_error(first_response(port, request), status, code)
    assert_still_serving(port)
