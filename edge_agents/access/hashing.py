"""Credential and person references: HMAC-SHA256 with the site secret, so no card number leaves the agent."""

from __future__ import annotations

import hashlib
import hmac

NAMESPACES = ("card", "person", "face", "pin", "qr")


class CredentialHasher:
    """Turns a raw credential into an opaque, stable hex ref (same secret -> same ref site-wide)."""

    def __init__(self, secret: str, hex_len: int = 32) -> None:
        self._key = secret.encode()
        self.hex_len = hex_len

    def check(self) -> None:
        """Refuse a missing or weak secret: a short key makes the refs guessable from card numbers."""
        if len(self._key) < 16:
            raise ValueError("agent.access.site_secret must be set to at least 16 characters "
                             "(e.g. from ${COMMHUB_SITE_SECRET}); it keys the credential hashes")
        if not 16 <= self.hex_len <= 64:
            raise ValueError("ref_hex_len must be between 16 and 64")

    def ref(self, namespace: str, value: str) -> str:
        """The ref of `value` in a namespace (a card 1234 and a person 1234 differ)."""
        if namespace not in NAMESPACES:
            raise ValueError(f"unknown credential namespace {namespace!r}")
        digest = hmac.new(self._key, f"{namespace}:{value}".encode(), hashlib.sha256).hexdigest()
        return digest[: self.hex_len]
