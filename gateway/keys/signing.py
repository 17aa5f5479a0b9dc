"""The ledger's Ed25519 signing key on disk, and the public half an auditor trusts.

The signing key is a PEM file created on first use with owner-only permissions. Only its
public half ever needs to leave the host (`sluis audit pubkey`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_FILE: Final = "ledger-signing.key"
#: A log name, which C2SP has the key be named after: a schema-less URL (host, then path
#: segments), no spaces, no '+'. Settings validate it with the same pattern.
LOG_NAME_PATTERN: Final = (
    r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,126}[A-Za-z0-9])?(?:/[A-Za-z0-9._~-]{1,64}){0,8}$"
)


class SigningKeyError(ValueError):
    """A signing or public key file that cannot be used."""


def signing_key_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / SIGNING_KEY_FILE


def generate_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """Create a new key file (PKCS#8 PEM, mode 0600); never overwrite an existing one."""
    p = Path(path)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{p}: cannot read the signing key ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{p}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{p}: not an Ed25519 key")
    return key


def load_or_create_signing_key(data_dir: str | Path) -> Ed25519PrivateKey:
    """The data dir's signing key, created on first use (racing creators both end up reading)."""
    path = signing_key_path(data_dir)
    if not path.exists():
        try:
            return generate_signing_key(path)
        except FileExistsError:
            pass
    return load_signing_key(path)


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An auditor's trusted key: a PEM public key (a PEM private key is accepted too)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{p}: cannot read the public key ({exc.strerror})") from None
    if b"PRIVATE KEY" in data:
        return load_signing_key(p).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{p}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{p}: not an Ed25519 key")
    return key
