"""`sluis retention run [--dry-run]`: the retention job by hand, or what it would remove.

The same walk as the app's scheduled job (`gateway.lifecycle.retention.job.apply_rules`),
so the dry run counts exactly what a run would remove now. `--dry-run` opens the database
read-only (SQLite: the file is opened `mode=ro`; PostgreSQL: it only SELECTs) and needs no
keys; a run opens the gateway's services (it records on the tenants' ledgers, so it needs
the signing key) and takes the job's claim, so it never runs beside a replica's own run.
The store is found as `sluis serve` finds it: `--config`, `SLUIS_*` variables, and
`--data-dir` / `--database-url` on top. Exit 0 with the table (or `--json`), 2 when it
cannot run, with a one-line message.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.lifecycle.retention.job import RetentionJob, RetentionReport, apply_rules
from gateway.lifecycle.retention.policy import defaults_of
from gateway.runtime.config import ConfigError, Settings, load_settings
from gateway.runtime.services import Services
from gateway.runtime.storage import open_read_only_store
from gateway.store import StoreError
from gateway.store.records import NotFound

EXIT_OK: Final = 0
EXIT_ERROR: Final = 2


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    changes: dict[str, object] = {}
    if args.data_dir:
        changes["data_dir"] = Path(args.data_dir)
    if args.database_url:
        changes["database_url"] = args.database_url
    return settings.model_copy(update=changes) if changes else settings


def _dry_run(settings: Settings, tenant: str | None) -> RetentionReport:
    store = open_read_only_store(settings)
    try:
        return apply_rules(
            store, defaults=defaults_of(settings), now=datetime.now(UTC), dry_run=True,
            tenant=tenant,
        )  # fmt: skip
    finally:
        store.close()


def _run(settings: Settings, tenant: str | None) -> RetentionReport | None:
    services = Services.open(settings.model_copy(update={"scheduler": False}))
    try:
        if tenant is not None:
            services.store.get_tenant(tenant)
        job = RetentionJob(
            services.store,
            services.metrics,
            defaults=lambda: defaults_of(settings),
            acting_for=lambda t: Acting(SYSTEM, services.ledger(t)),
            clock=lambda: datetime.now(UTC),
            owner=f"cli:{socket.gethostname()}:{os.getpid()}",
            interval=settings.retention_interval,
        )
        return job.run_once(force=True, tenant=tenant)
    finally:
        services.close()


def render_text(report: RetentionReport) -> str:
    """The report as a table: one row per tenant and rule."""
    verb = "would remove" if report.dry_run else "removed"
    head = "Retention dry run: nothing was removed" if report.dry_run else "Retention run"
    rows = [
        (r.tenant if r.tenant is not None else "(gateway)", r.rule, f"{r.count} {r.unit}")
        for r in report.removals
    ]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in
              enumerate(("tenant", "rule", verb))]  # fmt: skip
    lines = [f"{head} ({report.at.isoformat(timespec='seconds')})", ""]
    for row in [("tenant", "rule", verb), *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    lines += ["", f"{verb} in all: {report.total}"]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _run_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        report = _dry_run(settings, args.tenant) if args.dry_run else _run(settings, args.tenant)
    except NotFound:
        print(f"sluis retention run: no tenant {args.tenant}", file=sys.stderr)
        return EXIT_ERROR
    except (ConfigError, StoreError) as exc:
        print(f"sluis retention run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if report is None:
        print(
            "sluis retention run: another process is running the retention job now; "
            "try again when it has finished",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.json:
        sys.stdout.write(orjson.dumps(report.document(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retention = sub.add_parser(
        "retention",
        help="remove what the retention policy no longer keeps (or show what would go)",
        description="The retention job: feed compaction, leavers, run history, closed "
        "requests and short-lived records, per each tenant's policy.",
    )
    cmds = retention.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    run = cmds.add_parser(
        "run",
        help="run the retention job now (or with --dry-run, count what it would remove)",
        description="Run every retention rule for every tenant (or one), as the scheduled "
        "job does; --dry-run changes nothing.",
    )
    run.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    run.add_argument("--tenant", metavar="T", help="only this tenant")
    run.add_argument("--json", action="store_true", help="the report as JSON")
    run.add_argument(
        "--config", metavar="FILE", help="sluis.toml (optional; SLUIS_* variables apply too)"
    )
    run.add_argument("--data-dir", metavar="DIR", help="the data directory (overrides)")
    run.add_argument("--database-url", metavar="URL", help="PostgreSQL instead (overrides)")
    run.set_defaults(run=_run_command)
