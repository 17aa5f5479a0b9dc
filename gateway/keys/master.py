"""Secrets at rest: tenant subject keys and connector credentials, sealed under a master key.

AES-256-GCM (`cryptography`) with a random 96-bit nonce per seal, and the owner of the
secret (e.g. `tenant:acme` or `connector:acme/afas`) as associated data: a sealed blob
copied onto another row does not open there. The master key comes from configuration
(`SLUIS_MASTER_KEY`, base64 of 32 bytes, or a key file); losing it makes every sealed
secret unreadable, which is also how a whole installation is crypto-shredded.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION: Final = b"\x01"
_NONCE: Final = 12
MASTER_KEY_ENV: Final = "SLUIS_MASTER_KEY"


class SecretError(Exception):
    """A secret cannot be sealed or opened; the message holds no secret material."""


class SecretBox:
    """Seals and opens small secrets under one master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise SecretError("the master key must be exactly 32 bytes")
        self._aead = AESGCM(master_key)
        self._master = master_key

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (HKDF-SHA256 over the master key), e.g. to key
        the hashes of client addresses: stable across restarts and replicas, useless
        without the master key."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            self._master
        )

    def seal(self, plaintext: bytes, owner: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, owner.encode())

    def open(self, sealed: bytes, owner: str) -> bytes:
        if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _VERSION:
            raise SecretError(f"sealed secret of {owner} is damaged")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, owner.encode())
        except InvalidTag:
            raise SecretError(
                f"cannot open the secret of {owner}: wrong master key or tampered data"
            ) from None


def parse_master_key(text: str) -> bytes:
    """A master key from its base64 (or hex) spelling."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise SecretError("the master key is neither base64 nor hex") from None
    if len(raw) != 32:
        raise SecretError(f"the master key must decode to 32 bytes, not {len(raw)}")
    return raw


def load_or_create_master_key(path: Path) -> bytes:
    """Read a master key file, or create one (mode 0600) for a fresh installation."""
    if path.exists():
        return parse_master_key(path.read_text(encoding="ascii"))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.b64encode(key).decode() + "\n")
    return key
