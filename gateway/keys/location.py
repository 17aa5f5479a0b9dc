"""Where key files live: in a key directory of their own, not beside the database.

A copy of the data directory (a backup, a support bundle, a disk image) should not carry
the keys that open its sealed secrets and sign its ledger. By default the key directory is
`<data_dir>-keys`, a sibling; `key_dir` (SLUIS_KEY_DIR) puts it anywhere else, and the master
key can come from the environment (SLUIS_MASTER_KEY) with no file at all.

Installations made before the split keep their keys in the data directory. Those are still
found (making new keys would orphan every sealed secret and fork the ledger's signer), and
`co_located` tells the caller to warn until they are moved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.keys.signing import SIGNING_KEY_FILE

MASTER_KEY_FILE: Final = "master.key"
KEY_DIR_ENV: Final = "SLUIS_KEY_DIR"


def default_key_dir(data_dir: str | Path) -> Path:
    """`<data_dir>-keys`, beside the data directory rather than in it."""
    resolved = Path(data_dir).absolute()
    return resolved.with_name(resolved.name + "-keys")


@dataclass(frozen=True)
class KeyFile:
    path: Path
    #: The file is (or would be) inside the data directory, next to the database.
    co_located: bool


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def locate(name: str, data_dir: str | Path, key_dir: str | Path | None = None) -> KeyFile:
    """The key file `name`: in the key directory if there, else an older installation's in
    the data directory, else where a new one is to be made (the key directory)."""
    data = Path(data_dir)
    keys = Path(key_dir) if key_dir is not None else default_key_dir(data)
    path = keys / name
    if not path.exists() and (data / name).exists():
        path = data / name
    return KeyFile(path, _inside(path, data))


def find_signing_key(data_dir: str | Path, key_dir: str | Path | None = None) -> Path:
    """The ledger signing key of the installation in `data_dir` (for `sluis audit`):
    `key_dir`, else SLUIS_KEY_DIR, else the default key directory, else the data dir."""
    chosen = key_dir if key_dir is not None else os.environ.get(KEY_DIR_ENV) or None
    return locate(SIGNING_KEY_FILE, data_dir, chosen).path
