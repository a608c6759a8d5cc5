"""The recorder's Ed25519 key as an object: sign, and name a public key by its fingerprint.

Exports, backups and the audit checkpoints all sign with the one key; it lives here, below
them, so none of them imports another for it. Making, storing and publishing the key is
nvr.export.signing's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKey:
    def __init__(self, private: Ed25519PrivateKey, path: Path) -> None:
        self._private = private
        self.path = path

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    def public_pem(self) -> str:
        return public_pem(self.public_key())

    def fingerprint(self) -> str:
        return fingerprint(self.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 of the 32 raw public-key bytes, hex: short enough to read over the phone."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()
