"""Gateway configuration: a small TOML file, overridable by environment variables.

```toml
data_dir = "sluis-data"        # SQLite database, ledger signing key, master key file
host = "127.0.0.1"
port = 8080
admin_token = "..."            # bootstrap admin bearer token (or SLUIS_ADMIN_TOKEN)
master_key = "base64..."       # 32 bytes (or SLUIS_MASTER_KEY; else data_dir/master.key)
scheduler = true               # run each connector on its interval
allow_private_sources = false  # true lets connectors reach loopback/private addresses
resume_concurrency = 4         # interrupted runs resumed at the same time at start
ledger_name = "gw.example.com/sluis"  # origin prefix of tenant logs (default: from the key)
```

Secrets are better given through the environment than written in the file. Errors name the
file and the setting.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.keys.signing import LOG_NAME_PATTERN

ENV_PREFIX = "SLUIS_"


class ConfigError(ValueError):
    """A configuration that cannot be used; says where and what."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Path("sluis-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    admin_token: str | None = Field(default=None, min_length=16, repr=False)
    master_key: str | None = Field(default=None, repr=False)
    scheduler: bool = True
    #: Let connectors reach loopback and private addresses (local emulators, a LAN system).
    allow_private_sources: bool = False
    #: Interrupted runs resumed at start at the same time (one slow source must not hold
    #: the others back; the bound keeps a restart after an outage from opening them all).
    resume_concurrency: int = Field(default=4, ge=1, le=64)
    #: Names this gateway's ledger: tenant logs get the origin `<ledger_name>/<tenant>`
    #: (C2SP tlog-checkpoint), e.g. "gateway.example.com/sluis". Default: derived from the
    #: signing key. Applies to logs begun after it is set; a log never changes its origin.
    ledger_name: str | None = Field(default=None, pattern=LOG_NAME_PATTERN)


_ENV_KEYS = (
    "data_dir", "host", "port", "admin_token", "master_key", "scheduler", "allow_private_sources",
    "resume_concurrency", "ledger_name",
)  # fmt: skip


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from `path` (optional) with `SLUIS_*` environment variables on top."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    where = "environment"
    if path is not None:
        where = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: bad TOML ({exc})") from None
    for key in _ENV_KEYS:
        value = env.get(ENV_PREFIX + key.upper())
        if value is not None and value != "":
            raw[key] = value
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_input=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}: {field}: {err['msg']}") from None
