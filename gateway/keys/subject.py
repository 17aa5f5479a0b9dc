"""Per-tenant subject keys: the secret behind keyed pseudonymous subject ids.

A key file holds opaque key material (at least 32 bytes; one trailing newline is ignored so
that `openssl rand -hex 32 > key` works as well as raw bytes). `sluis keygen` writes one with
owner-only permissions. Losing the key means new subject ids for everyone; leaking it lets
whoever holds it test guesses of employee numbers against ids, so it is treated as a secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Final

#: The least key material a subject key may have (HMAC-SHA256 keys of 256 bits).
MIN_KEY_BYTES: Final = 32


class KeyFileError(ValueError):
    """A key file that cannot be used."""


def load_key_file(path: str | Path) -> bytes:
    """Read key material from `path`; raise `KeyFileError` with a reason a user can act on."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{p}: cannot read the key file ({exc.strerror})") from None
    data = data.removesuffix(b"\n").removesuffix(b"\r")
    if len(data) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"{p}: a key needs at least {MIN_KEY_BYTES} bytes of material, this one has "
            f"{len(data)} (create one with `sluis keygen --output {p}`)"
        )
    return data


def write_key_file(path: str | Path) -> None:
    """Create a new random key file readable by its owner only; never overwrite one."""
    p = Path(path)
    material = secrets.token_hex(32).encode() + b"\n"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(material)
