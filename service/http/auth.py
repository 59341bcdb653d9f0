"""API keys: which keys are accepted, and a comparison whose time does not depend on which key (if any) matched.

Keys are off when none is configured. A presented key is compared with `secrets.compare_digest` against every
accepted key, always all of them, so that neither the position of a matching key nor the length of a common
prefix shows in the response time.
"""

import hashlib
import secrets
from collections.abc import Sequence

from pydantic import SecretStr

from service.core.errors import Unauthorized


class ApiKeys:
    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._keys = tuple(key.get_secret_value().encode("ascii") for key in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def matches(self, presented: str) -> bool:
        """Whether `presented` is one of the keys; compares with every key, whatever the outcome."""
        candidate = presented.encode("utf-8", errors="surrogateescape")
        found = False
        for key in self._keys:
            found |= secrets.compare_digest(candidate, key)
        return found

    def check(self, presented: str | None) -> None:
        """Accept the request or refuse it.

        Args:
            presented: the key from `Authorization: Bearer <key>` or `X-API-Key: <key>`, None when neither.

        Raises:
            Unauthorized: keys are on and `presented` is missing (`missing_api_key`) or unknown (`invalid_api_key`).
        """
        if not self.enabled:
            return
        if not presented:
            raise Unauthorized(
                "this service needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                code="missing_api_key",
            )
        if not self.matches(presented):
            raise Unauthorized("the API key is not valid", code="invalid_api_key")

    def owner(self, presented: str | None) -> str:
        """Who owns what a request creates: a digest of its (accepted) key, or '' when keys are off."""
        if not self.enabled or not presented:
            return ""
        return hashlib.sha256(presented.encode("utf-8", errors="surrogateescape")).hexdigest()
