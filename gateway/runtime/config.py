"""Gateway configuration: a small TOML file, overridable by environment variables.

```toml
data_dir = "sluis-data"        # SQLite database (the embedded default)
database_url = "postgresql://sluis@db:5432/sluis"  # PostgreSQL instead (or SLUIS_DATABASE_URL)
database_password = "..."      # if not in the URL (better: SLUIS_DATABASE_PASSWORD, PGPASSFILE)
database_pool_size = 10        # connections per process
worker_threads = 16            # threads for store calls and page building (default:
                               # asyncio's on SQLite, 16 on PostgreSQL)
run_lease_seconds = 30.0       # a replica that stops renewing loses its run after this
commit_records = 1000          # people per sync commit transaction (smaller: shorter waits
                               # for other writers during a sync; slower syncs)
source_processes = 1           # worker processes that fetch and minimise sources' pages, so
                               # raw records never enter the gateway (0: in its own process)
scheduler_tick = 5.0           # seconds between the scheduler's looks at what is due
key_dir = "sluis-data-keys"    # master key and ledger signing key (default: beside data_dir)
host = "127.0.0.1"
port = 8080
public_url = "https://sluis.example.com"  # how browsers reach it (behind a TLS proxy)
admin_token = "..."            # bootstrap token: invites the first operator (or SLUIS_ADMIN_TOKEN)
master_key = "base64..."       # 32 bytes (or SLUIS_MASTER_KEY; else key_dir/master.key)
metrics_token = "..."          # bearer token /metrics asks for (or SLUIS_METRICS_TOKEN)
scheduler = true               # run each connector on its interval
allow_private_sources = false  # true lets connectors reach loopback/private addresses
resume_concurrency = 4         # interrupted runs resumed at the same time at start
ledger_name = "gw.example.com/sluis"  # origin prefix of tenant logs (default: from the key)
header_timeout = 15.0          # seconds for a client to send a request head (and idle time)
max_connections = 512          # open client connections at most; more get a 503
log_format = "text"            # or "json": one object per line
log_level = "INFO"             # DEBUG, INFO, WARNING, ERROR
checkpoint_push_interval = 5.0 # seconds between looks for new checkpoints to push
push_interval = 1.0            # seconds between a push worker's looks for new events
push_lease_seconds = 30.0      # a replica that stops renewing loses a destination after this
push_timeout = 30.0            # seconds a push request may take
push_retry_first = 1.0         # back-off between a batch's attempts: first wait, doubling
push_retry_cap = 300.0         # ... up to this (Retry-After wins when a destination sends one)
retention_interval = 86400     # seconds between retention runs (one replica runs each)
retention_feed_compaction_days = 30   # retention defaults per tenant (each tenant may
retention_leaver_grace_days = 90      # shorten them; none may exceed RETENTION_MAXIMA)
retention_run_history_days = 730
retention_request_history_days = 730
retention_short_lived_days = 7
```

Secrets are better given through the environment than written in the file, and better
still as files the environment points at: `SLUIS_<KEY>_FILE=/run/secrets/...` reads the
setting from that file (one trailing newline dropped), which is how Docker and Kubernetes
secrets arrive, and keeps the value out of `docker inspect` and `/proc/<pid>/environ`.
Errors name where the bad value came from: the file and the setting, the environment
variable, or the variable and the file it names (never the value).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.keys.location import default_key_dir
from gateway.keys.signing import LOG_NAME_PATTERN

#: People per sync transaction by default (`Settings.commit_records`): a page of 1,000 in
#: one, on both stores. Smaller transactions once shortened what a feed page's ledger entry
#: waited for (on SQLite a sync added 2.1x to feed p99 at 250, 3.8x at 1,000), while each
#: wrote its people into `subjects`; since a full run journals them (`RunJournal`) a SQLite
#: transaction holds its events and one journal row, and each costs a ledger entry, a
#: checkpoint and a COMMIT. Measured on the 2-core bench machine, alternating: a 100k full
#: sync into SQLite used 2.26-2.39 s of gateway CPU at 1,000 against 2.65-3.23 s at 250
#: (3.18-3.50 s against 3.33-4.08 s wall); bench_feed_load with 64 consumers during syncs,
#: feed p99 157-182 ms at 1,000 against 165-189 ms at 250. PostgreSQL was at 500 while a
#: transaction cost some ten round trips under the tenant's lock; at eight (its lock and
#: BEGIN sent with its first statement, its ledger append on the remembered head) a 100k
#: sync took 4.19-4.55 s at 1,000 against 4.85-5.08 s at 500, and with 64 consumers a sync
#: raised feed p99 1.43-1.48x at 1,000 against 1.42-1.69x at 500 (two runs each).
COMMIT_RECORDS: Final = 1000
#: `Settings.worker_threads` by default on PostgreSQL, where a feed page's thread mostly
#: waits for the server: with asyncio's default of the cores + 4 (6 on the 2-core bench
#: machine) 64 consumers' pages queued for a thread. Measured there, 64 consumers: p99
#: 112-121 ms at 16 against 138-165 ms at 6 or 10, 132-154 ms at 24 or 32 (more threads,
#: more waiting for the GIL after each round trip). Not on SQLite, whose reads hold the
#: GIL rather than wait: 16 threads took p99 from 72-78 to 99-106 ms there (two runs each).
WORKER_THREADS_POSTGRES: Final = 16

ENV_PREFIX = "SLUIS_"
#: `SLUIS_<KEY>_FILE`: the setting is read from the named file.
FILE_SUFFIX = "_FILE"


#: The longest each retention rule may keep anything, in days: what the platforms' privacy
#: statements promise (account data: the contract plus 90 days, and a leaver's contract has
#: ended; usage data: 24 months at most). A tenant's policy, and these defaults, may be
#: shorter, never longer. What each rule removes is `gateway.lifecycle.retention`'s.
RETENTION_MAXIMA: Final[dict[str, int]] = {
    # A superseded version of a person is account data that is no longer the account's.
    "feed_compaction_days": 90,
    "leaver_grace_days": 90,
    # Run history and data-subject requests: records of the service's use.
    "run_history_days": 730,
    "request_history_days": 730,
    # Sessions, invitations, tokens, pending sign-ins, throttles: a month at most.
    "short_lived_days": 30,
}


class ConfigError(ValueError):
    """A configuration that cannot be used; says where and what."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Path("sluis-data")
    #: PostgreSQL instead of SQLite: several replicas can then share one database.
    database_url: str | None = Field(
        default=None, pattern=r"^postgres(ql)?://", max_length=2048, repr=False
    )
    #: The database password, when the URL has none (libpq's PGPASSWORD/PGPASSFILE work too).
    database_password: str | None = Field(default=None, repr=False)
    database_pool_size: int = Field(default=10, ge=1, le=200)
    #: Threads the gateway's event loop runs store calls and page building on
    #: (`asyncio.to_thread`). None: asyncio's own default (the cores + 4) on SQLite,
    #: `WORKER_THREADS_POSTGRES` on PostgreSQL (`worker_thread_count`).
    worker_threads: int | None = Field(default=None, ge=2, le=256)
    #: Seconds between the scheduler's looks at what is due (and at runs to take over).
    scheduler_tick: float = Field(default=5.0, gt=0, le=3600)
    #: How long a sync run stays with a replica that stopped renewing its lease; another
    #: replica then resumes it from its last committed page.
    run_lease_seconds: float = Field(default=30.0, ge=2, le=3600)
    #: The most people one sync transaction commits (a page is split into transactions of
    #: this many, each with its own inbound ledger entry): a feed page's ledger entry waits
    #: for the tenant's writer, so smaller transactions shorten its wait during a sync, at
    #: the cost of more commits per run (`COMMIT_RECORDS`).
    commit_records: int = Field(default=COMMIT_RECORDS, ge=10, le=100_000)
    #: Processes that fetch and minimise sources' pages for this gateway's sync runs and
    #: previews (`gateway.sync.source_worker`): raw vendor records then never enter the
    #: process that serves the feed, and parsing them runs on another core instead of
    #: holding the GIL feed pages need. 0 runs connectors in the gateway's own process.
    source_processes: int = Field(default=1, ge=0, le=64)
    #: Where the master key and the ledger signing key live; None: `default_key_dir`.
    key_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Where browsers reach the gateway, when a proxy ends TLS in front of it: the
    #: console's cookies are then Secure, and the OIDC redirect address is built from it
    #: rather than from the request's Host header. None: as each request arrives.
    public_url: str | None = Field(
        default=None, pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", max_length=255
    )
    admin_token: str | None = Field(default=None, min_length=16, repr=False)
    master_key: str | None = Field(default=None, repr=False)
    #: Bearer token `/metrics` requires; None leaves it open (bind to a private address).
    metrics_token: str | None = Field(default=None, min_length=16, repr=False)
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
    #: Who processes, for the record of processing (GDPR Art. 30(2), `sluis report
    #: processing-record`): the operator's name, contact details and its DPO's, and any
    #: transfer of personal data outside the EEA (unset: none).
    processor_name: str | None = Field(default=None, max_length=200)
    processor_contact: str | None = Field(default=None, max_length=500)
    dpo_contact: str | None = Field(default=None, max_length=500)
    third_country_transfers: str | None = Field(default=None, max_length=1000)
    #: Days a data-subject request has from its arrival (GDPR Art. 12(3): one month).
    dsr_due_days: int = Field(default=30, ge=1, le=90)
    #: Days a terminated tenant's data is kept before it is crypto-shredded (the platforms
    #: promise the contract plus 90 days).
    tenant_grace_days: int = Field(default=90, ge=0, le=3650)

    header_timeout: float = Field(default=15.0, gt=0, le=3600)
    max_connections: int = Field(default=512, ge=1, le=1_000_000)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Seconds between looks for new signed checkpoints to POST to tenants' push URLs.
    checkpoint_push_interval: float = Field(default=5.0, gt=0, le=3600)
    #: Seconds an idle push worker waits before it looks for new events again, and between
    #: the looks for destinations without a worker (`gateway.delivery.push`).
    push_interval: float = Field(default=1.0, gt=0, le=3600)
    #: How long a replica holds a destination's worker without renewing it.
    push_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    #: Seconds a push request may take before it counts as failed (and is retried).
    push_timeout: float = Field(default=30.0, gt=0, le=600)
    #: Back-off between a batch's attempts: from this many seconds, doubling up to the cap
    #: (with jitter), unless the destination's `Retry-After` says otherwise.
    push_retry_first: float = Field(default=1.0, ge=0, le=3600)
    push_retry_cap: float = Field(default=300.0, ge=0, le=86400)
    #: Seconds between retention runs; one replica runs each (`gateway.lifecycle.retention`).
    retention_interval: float = Field(default=86400.0, ge=60, le=7 * 86400)
    #: The retention defaults every tenant's policy starts from (days). Feed events are
    #: compacted after a month: only a consumer more than a month behind needs a person's
    #: earlier versions, and it still gets their newest.
    retention_feed_compaction_days: int = Field(
        default=30, ge=1, le=RETENTION_MAXIMA["feed_compaction_days"]
    )
    #: A leaver's tombstone and change-detection row: the contract plus 90 days.
    retention_leaver_grace_days: int = Field(
        default=90, ge=1, le=RETENTION_MAXIMA["leaver_grace_days"]
    )
    #: Finished sync runs: 24 months, the longest usage data is kept.
    retention_run_history_days: int = Field(
        default=730, ge=1, le=RETENTION_MAXIMA["run_history_days"]
    )
    #: Closed data-subject requests (and erasure receipts once their suppression is lifted):
    #: the controller's proof that it answered, kept as long as usage data.
    retention_request_history_days: int = Field(
        default=730, ge=1, le=RETENTION_MAXIMA["request_history_days"]
    )
    #: Ended sessions, used or expired invitations, revoked or expired API tokens, expired
    #: pending sign-ins and stale throttles: a week, long enough to look into an incident.
    retention_short_lived_days: int = Field(
        default=7, ge=1, le=RETENTION_MAXIMA["short_lived_days"]
    )

    @property
    def worker_thread_count(self) -> int | None:
        """`worker_threads` in effect; None leaves asyncio's default."""
        if self.worker_threads is not None:
            return self.worker_threads
        return WORKER_THREADS_POSTGRES if self.database_url else None

    @property
    def keys(self) -> Path:
        """The key directory in effect."""
        return self.key_dir if self.key_dir is not None else default_key_dir(self.data_dir)


_ENV_KEYS = tuple(Settings.model_fields)


def _case_level(raw: dict[str, Any]) -> None:
    level = raw.get("log_level")
    if isinstance(level, str):
        raw["log_level"] = level.upper()


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from `path` (optional) with `SLUIS_*` environment variables on top."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    from_env: set[str] = set()
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: bad TOML ({exc})") from None
    from_file: dict[str, str] = {}
    for key in _ENV_KEYS:
        name = ENV_PREFIX + key.upper()
        value = env.get(name)
        file_name = env.get(name + FILE_SUFFIX)
        if file_name:
            if value:
                raise ConfigError(
                    f"{name} and {name}{FILE_SUFFIX} are both set; give the setting one way"
                )
            value = _read_setting_file(name + FILE_SUFFIX, file_name)
            from_file[key] = f"{name}{FILE_SUFFIX} ({file_name})"
        if value is not None and value != "":
            raw[key] = value
            from_env.add(key)
    _case_level(raw)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_input=False)[0]
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in from_file:
            where = from_file[loc[0]]
        elif loc and loc[0] in from_env:
            where = ENV_PREFIX + loc[0].upper()
        else:
            where = f"{path if path is not None else 'configuration'}: {'.'.join(loc)}"
        raise ConfigError(f"{where}: {err['msg']}") from None


def _read_setting_file(variable: str, file_name: str) -> str:
    """A setting's value from the file `variable` names: the whole file less one trailing
    newline (what `echo` and editors add). An empty file is refused: an unset secret must
    not pass for a set one."""
    try:
        text = Path(file_name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {file_name} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}: {file_name} is not UTF-8 text") from None
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"{variable}: {file_name} is empty")
    return value
