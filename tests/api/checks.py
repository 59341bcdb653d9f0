"""Assertions shared by the API tests: the one error body, and a service that still serves afterwards."""

import httpx


def assert_error(response: httpx.Response, status: int, code: str, *in_message: str) -> None:
    """`response` is `status` with the one error body: this `code`, these texts in its message, its request id."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["x-request-id"]
    for text in in_message:
        assert text in error["message"], error["message"]


async def assert_still_serving(client: httpx.AsyncClient, url: str, image: bytes) -> None:
    """Ready, and a good request to `url` is answered 200."""
    assert (await client.get("/readyz")).status_code == 200
    response = await client.post(url, files={"image": image})
    assert response.status_code == 200, response.text
