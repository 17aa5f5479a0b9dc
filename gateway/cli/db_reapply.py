"""`sluis db reapply --export FILE`: after a restore, erase and restrict again whoever the
ledger says was erased or restricted since the backup (`gateway.lifecycle.reapply`).

The export (the auditor's copy, or `sluis audit export` taken before restoring) is
verified first, with `--public-key` or the installation's own signing key: entries that do
not verify are not acted on, and nothing is changed. Then, per tenant, the suppressions its
audit entries record are compared with the restored database; `--dry-run` shows the
difference, a run applies it (the gateway's own erasures and restrictions, on the ledger).
Run it with the scheduler stopped, before anything syncs. Exit 0 done (or nothing to do),
1 the export does not verify, 2 it could not run.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gateway.keys.location import find_signing_key
from gateway.keys.signing import load_public_key, load_signing_key
from gateway.ledger.audit import SYSTEM, AuditEntry
from gateway.ledger.export import ExportFormatError, export_entries, export_tenants, verify_export
from gateway.ledger.kinds import is_audit_body, parse_entry
from gateway.ledger.record import Acting
from gateway.lifecycle.reapply import Plan, plan, reapply, recorded_suppressions
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.runtime.storage import open_read_only_store
from gateway.store.protocols import Store, StoreError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_ERROR: Final = 2


def _key(args: argparse.Namespace, settings: Settings) -> Ed25519PublicKey:
    if args.public_key:
        return load_public_key(args.public_key)
    path = find_signing_key(settings.data_dir)
    if not path.is_file():
        raise StoreError(f"no signing key at {path}; pass --public-key FILE")
    return load_signing_key(path).public_key()


def _audit_entries(path: Path, tenant: str) -> list[AuditEntry]:
    found = []
    for _, body, _ in export_entries(path, tenant):
        if is_audit_body(body):
            entry = parse_entry(body)
            if isinstance(entry, AuditEntry):
                found.append(entry)
    return found


def _plans(store: Store, path: Path, tenants: list[str]) -> tuple[list[Plan], list[str]]:
    """A plan per tenant the restored store knows; the tenants it does not."""
    known = {t.id for t in store.list_tenants()}
    plans = [
        plan(store, t, recorded_suppressions(_audit_entries(path, t)))
        for t in tenants
        if t in known
    ]
    return plans, [t for t in tenants if t not in known]


def _print(plans: list[Plan], unknown: list[str], *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        doc = {
            "dry_run": dry_run,
            "tenants": [
                {"tenant": p.tenant, "erase": p.erase, "restrict": p.restrict,
                 "lifted_since": p.lifted}
                for p in plans
            ],
            "not_in_database": unknown,
        }  # fmt: skip
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    verb = ("would erase", "would restrict") if dry_run else ("erased", "restricted")
    for p in plans:
        print(f"{p.tenant}: {verb[0]} {len(p.erase)}, {verb[1]} {len(p.restrict)}", end="")
        print(
            f"; {len(p.lifted)} lifted since the backup (not lifted again: an admin decides)"
            if p.lifted
            else ""
        )
    for tenant in unknown:
        print(f"{tenant}: not in this database (left alone)")


def run_reapply(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.export)
    try:
        tenants = export_tenants(path)
    except ExportFormatError as exc:
        print(f"sluis db reapply: {path}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.tenant is not None:
        if args.tenant not in tenants:
            print(f"sluis db reapply: {path} holds no log of {args.tenant}", file=sys.stderr)
            return EXIT_ERROR
        tenants = [args.tenant]
    key = _key(args, settings)
    for tenant in tenants:
        report = verify_export(path, tenant, key)
        if not report.ok:
            print(
                f"sluis db reapply: the export's log of {tenant} does not verify "
                f"({report.reason}); nothing was changed",
                file=sys.stderr,
            )
            return EXIT_FAILED
    try:
        if args.dry_run:
            store = open_read_only_store(settings)
            try:
                plans, unknown = _plans(store, path, tenants)
            finally:
                store.close()
        else:
            services = Services.open(settings.model_copy(update={"scheduler": False}))
            try:
                plans, unknown = _plans(services.store, path, tenants)
                now = datetime.now(UTC)
                for todo in plans:
                    reapply(services.store, Acting(SYSTEM, services.ledger(todo.tenant)), todo, now)
            finally:
                services.close()
    except (ExportFormatError, ValidationError):
        print(f"sluis db reapply: {path} holds an entry that cannot be read", file=sys.stderr)
        return EXIT_ERROR
    _print(plans, unknown, dry_run=args.dry_run, as_json=args.json)
    return EXIT_OK


def add_parser(cmds: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> argparse.ArgumentParser:  # fmt: skip
    reapply_ = cmds.add_parser(
        "reapply",
        parents=[common],
        help="after a restore: erase and restrict again whom the ledger's export says",
        description=(__doc__ or "").split("\n\n")[1],
    )
    reapply_.add_argument(
        "--export",
        metavar="FILE",
        required=True,
        help="a ledger export newer than the backup (sluis audit export)",
    )
    reapply_.add_argument("--public-key", metavar="FILE", help="verify the export with this key")
    reapply_.add_argument("--tenant", metavar="T", help="only this tenant")
    reapply_.add_argument("--dry-run", action="store_true", help="show; change nothing")
    reapply_.add_argument("--json", action="store_true", help="the plan as JSON")
    reapply_.add_argument("--data-dir", metavar="DIR", help="the data directory (overrides)")
    reapply_.add_argument("--database-url", metavar="URL", help="PostgreSQL instead (overrides)")
    return reapply_
