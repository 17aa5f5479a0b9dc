"""`sluis report`: answers for the controller, from the tenant's ledger and configuration.

`breach`: run where the ledger is (the data directory, or `--database-url`), read-only: an
operator who has just learnt of an incident gets the GDPR Art. 33(3)(a) numbers for the
window in one command, as text to read or JSON to send (`gateway.lifecycle.breach`).
`processing-record`: the GDPR Art. 30(2) record for one controller, from the gateway's
settings and store (`gateway.lifecycle.processing_record`), as Markdown or JSON.
Exit 0 with the report, 2 when it cannot be made (no database, an unknown tenant, a bad
window, an unreadable ledger), with a one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import orjson

from gateway.lifecycle.breach import (
    DEFAULT_SKEW,
    ReportError,
    breach_scope,
    render_text,
    scope_document,
)
from gateway.lifecycle.processing_record import processing_record, processor_of, render_markdown
from gateway.runtime.config import ConfigError, load_settings
from gateway.runtime.storage import DB_FILE, open_ledger_reader, open_store, sqlite_path
from gateway.store import StoreError
from gateway.store.records import NotFound

DEFAULT_DATA_DIR: Final = "./sluis-data"
EXIT_OK: Final = 0
EXIT_ERROR: Final = 2


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be an ISO 8601 time with a zone, e.g. 2026-11-30T14:00:00+01:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("must carry a time zone (e.g. Z or +01:00)")
    return value


def _minutes(text: str) -> timedelta:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number of minutes") from None
    if not 0 <= value <= 24 * 60:
        raise argparse.ArgumentTypeError("must be between 0 and 1440 minutes")
    return timedelta(minutes=value)


def _run_breach(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or os.environ.get("SLUIS_DATA_DIR") or DEFAULT_DATA_DIR)
    try:
        reader = open_ledger_reader(
            data_dir,
            database_url=args.database_url or os.environ.get("SLUIS_DATABASE_URL"),
            password=os.environ.get("SLUIS_DATABASE_PASSWORD"),
        )
        try:
            scope = breach_scope(
                reader, args.tenant, args.start, args.end, connector=args.connector,
                skew=args.skew,
            )  # fmt: skip
        finally:
            reader.close()
    except (ReportError, StoreError) as exc:
        print(f"sluis report breach: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        document = scope_document(scope, ids=not args.no_ids)
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_text(scope))
    return EXIT_OK


def _run_record(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        if args.data_dir:
            settings = settings.model_copy(update={"data_dir": Path(args.data_dir)})
        if not settings.database_url and not sqlite_path(settings).is_file():
            raise StoreError(f"no database at {sqlite_path(settings)}")
        store = open_store(settings, upgrade=False)
        try:
            processor = processor_of(settings)
            record = processing_record(store, args.tenant, processor, datetime.now(UTC))
        finally:
            store.close()
    except NotFound:
        print(f"sluis report processing-record: no tenant {args.tenant}", file=sys.stderr)
        return EXIT_ERROR
    except (ConfigError, StoreError) as exc:
        print(f"sluis report processing-record: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        sys.stdout.write(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_markdown(record))
    return EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="reports for the controller from the ledger (breach scope)",
        description="Answer a controller's questions from the tenant's ledger.",
    )
    cmds = report.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    breach = cmds.add_parser(
        "breach",
        help="what moved in a time window: subjects, records, categories, sources, "
        "destinations, authorisations (GDPR Art. 33(3)(a))",
        description="The scope of a breach window from the tenant's ledger, read-only.",
    )
    breach.add_argument("--tenant", required=True, metavar="T")
    breach.add_argument("--from", dest="start", required=True, type=_when, metavar="TIME")
    breach.add_argument(
        "--to", dest="end", required=True, type=_when, metavar="TIME", help="excluded"
    )
    breach.add_argument("--connector", metavar="C", help="only this connector's transfers")
    breach.add_argument("--format", choices=("text", "json"), default="text")
    breach.add_argument(
        "--no-ids", action="store_true", help="JSON: the count of subjects, not their ids"
    )
    breach.add_argument(
        "--skew",
        type=_minutes,
        default=DEFAULT_SKEW,
        metavar="MINUTES",
        help="how far an entry's time may trail its batch's checkpoint"
        f" (default {int(DEFAULT_SKEW.total_seconds() // 60)})",
    )
    breach.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"data directory (default: $SLUIS_DATA_DIR or {DEFAULT_DATA_DIR}; DIR/{DB_FILE})",
    )
    breach.add_argument(
        "--database-url", metavar="URL", help="read the ledger from PostgreSQL instead"
    )
    breach.set_defaults(run=_run_breach)
    record = cmds.add_parser(
        "processing-record",
        help="the record of processing for one controller (GDPR Art. 30(2))",
        description="The processor's record of processing for a tenant, from the settings "
        "(processor_name, processor_contact, dpo_contact, third_country_transfers) and the "
        "store (connectors, authorisations, consumers).",
    )
    record.add_argument("--tenant", required=True, metavar="T")
    record.add_argument("--format", choices=("markdown", "json"), default="markdown")
    record.add_argument(
        "--config", metavar="FILE", help="sluis.toml (optional; SLUIS_* variables apply too)"
    )
    record.add_argument("--data-dir", metavar="DIR", help="the data directory (overrides)")
    record.set_defaults(run=_run_record)
