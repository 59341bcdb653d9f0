"""`Idempotency-Key` on the requests that create jobs (IETF draft-ietf-httpapi-idempotency-key-header): a client
that sends a job-creating POST again (its connection broke before the 202) with the same key gets the job the
first one created, not a second job.

The key is the client's (1 to 255 printable ASCII characters, a UUID in practice); it is remembered with the job
for as long as the job is kept (`JOB_TTL_S` after it ends), per API key. The request is known by a digest of
what it asks: the operation, its validated parameters and the image's bytes, so the same request sent as form
fields or as JSON is the same request. The same key with another request is refused (422
`idempotency_key_reused`).
"""

import hashlib
import re

from starlette.requests import Request

from service.core.errors import BadRequest
from service.jobs.store import Idempotency

HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key(request: Request) -> str | None:
    """The request's `Idempotency-Key`, or None.

    Raises:
        BadRequest: `invalid_idempotency_key`, not 1 to 255 printable ASCII characters.
    """
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest(
            f"{HEADER} must be 1 to 255 printable ASCII characters without spaces (a UUID, say)",
            code="invalid_idempotency_key",
        )
    return key


def fingerprint(key: str, *parts: bytes) -> Idempotency:
    """`key` with a digest of `parts` (what the request asks); hashing an image takes milliseconds, so call it in
    the CPU pool."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return Idempotency(key, digest.hexdigest())
