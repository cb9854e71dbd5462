"""Client keys: from ``API_KEYS`` and the config's ``keys``, held and compared only as SHA-256
digests, so lookup time does not depend on how much of a guessed key is right."""

from __future__ import annotations

import hashlib

from common.config import KeyConfig, key_id
from common.errors import AuthenticationError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def redact(key: str) -> str:
    """What an error message may show of a key."""
    return f"{key[:3]}***{key[-4:]}" if len(key) > 10 else "***"


class KeyStore:
    def __init__(self, env_keys: str, config_keys: list[KeyConfig]) -> None:
        self._ids: dict[bytes, str] = {}
        for raw in env_keys.split(","):
            if raw.strip():
                self._ids[_digest(raw.strip())] = key_id(raw.strip())
        for entry in config_keys:
            self._ids[_digest(entry.key)] = entry.id or key_id(entry.key)

    def __len__(self) -> int:
        return len(self._ids)

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> str:
        """The key id for the presented key, from ``Authorization: Bearer`` or ``X-Api-Key``."""
        key = x_api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                key = value.strip()
        if not key:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY) or in X-Api-Key.",
                code="missing_api_key",
            )
        # Only SHA-256 digests are compared: a guess's timing depends on its digest, which an
        # attacker cannot steer toward a real key's digest, so no prefix of a key leaks.
        found = self._ids.get(_digest(key))
        if found is None:
            raise AuthenticationError(f"Incorrect API key provided: {redact(key)}.")
        return found
