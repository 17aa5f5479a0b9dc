"""`sluis audit`: verify, export and prove the ledger (transfers and audit entries); print
the public key.

These are the commands a customer's auditor runs, often on their own machine with nothing
but an export, the public key we gave them and a checkpoint they kept from last time, so
each one works offline and explains its verdict in one line per tenant. Exit codes:
0 intact, 1 the ledger fails verification, 2 the command could not run (missing database,
unknown tenant, bad index, unreadable key) — a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.cli.verify_state import Resumable, StateError, read_state, write_state
from gateway.keys.location import find_signing_key
from gateway.keys.signing import (
    SigningKeyError,
    load_public_key,
    load_signing_key,
    public_key_pem,
)
from gateway.ledger.checkpoint import (
    CheckpointError,
    key_name_for,
    open_checkpoint,
    parse_verifier_key,
    read_unverified,
    tenant_of,
    verifier_key,
)
from gateway.ledger.export import (
    ExportFormatError,
    export_checkpoint_note,
    export_tenants,
    verify_export,
    write_export,
)
from gateway.ledger.log import Ledger, LedgerError
from gateway.ledger.verify import KeptCheckpoint, ResumeRefused, VerifyReport
from gateway.runtime.storage import DB_FILE, open_ledger_reader
from gateway.store import StoreError, VerifiedPoint
from gateway.store.ledger_sql import SqlLedgerStore

DEFAULT_DATA_DIR: Final = "./sluis-data"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_ERROR: Final = 2

Command = Callable[[argparse.Namespace], int]


class _UsageError(Exception):
    """Something the user can fix; printed as one line, exit 2."""


def _data_dir(args: argparse.Namespace) -> Path:
    value = args.data_dir or os.environ.get("SLUIS_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(value)


def _open_store(args: argparse.Namespace) -> SqlLedgerStore:
    """The ledger tables: PostgreSQL when a database URL is given (or SLUIS_DATABASE_URL),
    else DIR/sluis.db, read-only."""
    return open_ledger_reader(
        _data_dir(args),
        database_url=args.database_url or os.environ.get("SLUIS_DATABASE_URL"),
        password=os.environ.get("SLUIS_DATABASE_PASSWORD"),
    )


def _trusted_key(args: argparse.Namespace) -> tuple[Ed25519PublicKey, bool]:
    """The key to verify with, and whether it came from the auditor rather than the data dir."""
    if args.public_key:
        return _load_trusted(args.public_key), True
    path = find_signing_key(_data_dir(args))
    if not path.is_file():
        raise _UsageError(f"no signing key at {path}; pass --public-key FILE")
    return load_signing_key(path).public_key(), False


def _load_trusted(path: str) -> Ed25519PublicKey:
    """A PEM key, or a verifier key line (`name+keyid+key`, as `pubkey --format vkey` prints)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    if text and "-----BEGIN" not in text and "\n" not in text:
        try:
            return parse_verifier_key(text)[1]
        except CheckpointError as exc:
            raise _UsageError(f"{path}: {exc}") from None
    return load_public_key(path)


def _read_checkpoint(path: str, key: Ed25519PublicKey) -> tuple[str, str]:
    try:
        note = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"{path}: cannot read the checkpoint ({exc})") from None
    if not note.endswith("\n"):
        note += "\n"  # editors like to drop the final newline; the signature does not cover it
    try:
        cp = open_checkpoint(note, key)
    except CheckpointError as exc:
        raise _UsageError(f"{path}: {exc}") from None
    tenant = tenant_of(cp.origin)
    if tenant is None:
        raise _UsageError(f"{path}: checkpoint is for {cp.origin!r}, not a Sluis log")
    return note, tenant


def _notes_in(path: Path) -> list[tuple[str, str]]:
    """The notes one kept file holds, each with a label naming the file: a note as signed,
    or the JSON of the checkpoints routes (a page, one checkpoint, or a list of them)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"{path}: cannot read the checkpoint ({exc})") from None
    if not text.lstrip().startswith(("{", "[")):
        return [(str(path), text if text.endswith("\n") else text + "\n")]
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _UsageError(f"{path}: neither a checkpoint note nor valid JSON") from None
    if isinstance(doc, dict):
        doc = doc.get("checkpoints", [doc])
    if not isinstance(doc, list):
        raise _UsageError(f"{path}: JSON holds no checkpoints")
    notes = []
    for i, item in enumerate(doc):
        note = item.get("note") if isinstance(item, dict) else None
        if not isinstance(note, str):
            raise _UsageError(f"{path}: item {i} holds no checkpoint note")
        seq = item.get("seq")
        label = f"{path} (seq {seq})" if isinstance(seq, int) else f"{path} (item {i})"
        notes.append((label if len(doc) > 1 else str(path), note))
    return notes


def _read_kept(directory: str, key: Ed25519PublicKey) -> dict[str, list[KeptCheckpoint]]:
    """Every checkpoint in `directory` (and below; hidden files left out), opened with the
    trusted key, by the tenant whose log it names."""
    root = Path(directory)
    if not root.is_dir():
        raise _UsageError(f"{directory}: not a folder of kept checkpoints")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    kept: dict[str, list[KeptCheckpoint]] = {}
    for path in files:
        for label, note in _notes_in(path):
            try:
                cp = open_checkpoint(note, key)
            except CheckpointError as exc:
                raise _UsageError(f"{label}: {exc}") from None
            tenant = tenant_of(cp.origin)
            if tenant is None:
                raise _UsageError(f"{label}: checkpoint is for {cp.origin!r}, not a Sluis log")
            kept.setdefault(tenant, []).append((label, cp))
    if not kept:
        raise _UsageError(f"{directory}: holds no checkpoints")
    return kept


def _print_report(report: VerifyReport) -> None:
    root = base64.b64encode(report.root).decode("ascii")
    if report.ok:
        resumed = (
            f" (entries {report.resumed_from} on read; the rest as verified before)"
            if report.resumed_from
            else ""
        )
        print(
            f"{report.tenant}: intact: {report.entries} entries{resumed},"
            f" {report.checkpoints} checkpoints, root {root}"
        )
    elif report.first_bad_index is not None:
        print(f"{report.tenant}: FAILED at entry {report.first_bad_index}: {report.reason}")
    else:
        print(f"{report.tenant}: FAILED: {report.reason}")


def _run_verify(args: argparse.Namespace) -> int:
    if args.export:
        tenants = _export_tenants(args.export)
    else:
        with _open_store(args) as store:
            tenants = store.tenants()
    key, from_auditor = _trusted_key(args)
    external: str | None = None
    tenant: str | None = args.tenant
    if args.checkpoint:
        external, cp_tenant = _read_checkpoint(args.checkpoint, key)
        if tenant is not None and tenant != cp_tenant:
            raise _UsageError(f"--checkpoint is for tenant {cp_tenant!r}, not {tenant!r}")
        tenant = cp_tenant
    kept = _read_kept(args.checkpoints, key) if args.checkpoints else {}
    if tenant is not None:
        # With a kept checkpoint a vanished tenant is a finding (exit 1), not a typo.
        if tenant not in tenants and external is None and tenant not in kept:
            raise _UsageError(f"unknown tenant {tenant!r}")
        tenants = [tenant]
    else:
        # A tenant the auditor kept checkpoints of must still have its log.
        tenants = [*tenants, *sorted(t for t in kept if t not in tenants)]
    if not tenants:
        print("the ledger holds no logs yet")
        return EXIT_OK
    if not from_auditor:
        print(
            "note: checking against this data dir's own signing key;"
            " an auditor should pass --public-key",
            file=sys.stderr,
        )
    state_path = Path(args.resume) if args.resume else None
    try:
        states = read_state(state_path) if state_path is not None else {}
    except StateError as exc:
        raise _UsageError(str(exc)) from None
    reports = [
        _verify_one(args, t, key, external, kept.get(t, []), start=states.get(t)) for t in tenants
    ]
    if state_path is not None:
        _keep_state(args, state_path, states, reports)
    for report in reports:
        _print_report(report)
        if report.ok and kept.get(report.tenant):
            print(
                f"{report.tenant}: {len(kept[report.tenant])} kept checkpoints agree with the log"
            )
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def _export_tenants(path: str) -> list[str]:
    try:
        return export_tenants(path)
    except OSError as exc:
        raise _UsageError(f"{path}: cannot read the export ({exc.strerror})") from None
    except ExportFormatError as exc:
        raise _UsageError(f"{path}: {exc}") from None


def _verify_one(
    args: argparse.Namespace,
    tenant: str,
    key: Ed25519PublicKey,
    external: str | None,
    kept: list[KeptCheckpoint],
    *,
    start: Resumable | None,
) -> VerifyReport:
    if args.export:
        try:
            try:
                return verify_export(args.export, tenant, key, external, kept, start=start)
            except ResumeRefused as exc:
                print(f"{tenant}: not resuming ({exc}); reading from entry 0", file=sys.stderr)
                return verify_export(args.export, tenant, key, external, kept)
        except ExportFormatError as exc:
            return VerifyReport(tenant, False, 0, 0, b"", None, f"export is damaged: {exc}")
    with _open_store(args) as store:
        return Ledger(store, tenant).verify(key, external, kept, start=start)


def _keep_state(
    args: argparse.Namespace,
    path: Path,
    states: dict[str, Resumable],
    reports: list[VerifyReport],
) -> None:
    """Record where each passing verification ended (a failing one leaves its tenant's
    point as it was: the next run resumes from the last good one)."""
    for report in reports:
        if not report.ok or report.last_seq == 0:
            continue
        note = _checkpoint_note(args, report.tenant, report.last_seq)
        if note is not None:
            at = datetime.now(UTC)
            point = VerifiedPoint(report.entries, report.last_seq, report.frontier, at)
            states[report.tenant] = (point, note)
    try:
        write_state(path, states)
    except OSError as exc:
        raise _UsageError(f"{path}: cannot write the state ({exc.strerror})") from None


def _checkpoint_note(args: argparse.Namespace, tenant: str, seq: int) -> str | None:
    if args.export:
        return export_checkpoint_note(args.export, tenant, seq)
    with _open_store(args) as store:
        found = store.checkpoints_after(tenant, seq - 1, 1)
    return found[0].note if found and found[0].seq == seq else None


@contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with Path(path).open("wb") as f:
        yield f


def _run_export(args: argparse.Namespace) -> int:
    with _open_store(args) as store, store.snapshot() as reader:
        tenants = reader.tenants()
        if args.tenant is not None:
            if args.tenant not in tenants:
                raise _UsageError(f"unknown tenant {args.tenant!r}")
            tenants = [args.tenant]
        with _output(args.output) as out:
            count = write_export(reader, tenants, out)
    if args.output not in (None, "-"):
        print(f"exported {count} entries of {len(tenants)} log(s) to {args.output}")
    return EXIT_OK


def _run_prove(args: argparse.Namespace) -> int:
    with _open_store(args) as store:
        if args.tenant not in store.tenants():
            raise _UsageError(f"unknown tenant {args.tenant!r}")
        proof = Ledger(store, args.tenant).prove_inclusion(args.index, args.size)
    sys.stdout.buffer.write(orjson.dumps(proof.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.buffer.flush()
    return EXIT_OK


def _run_pubkey(args: argparse.Namespace) -> int:
    path = find_signing_key(_data_dir(args))
    if not path.is_file():
        raise _UsageError(f"no signing key at {path} (it is created by the first ledger append)")
    public = load_signing_key(path).public_key()
    if args.format != "vkey":
        sys.stdout.write(public_key_pem(public))
        return EXIT_OK
    # A log's checkpoints are signed under its own key name (its origin): one line per log.
    with _open_store(args) as store:
        tenants = store.tenants()
        if args.tenant is not None:
            if args.tenant not in tenants:
                raise _UsageError(f"unknown tenant {args.tenant!r}")
            tenants = [args.tenant]
        origins = []
        for tenant in tenants:
            latest = store.latest_checkpoint(tenant)
            if latest is not None:
                origins.append(read_unverified(latest.note).origin)
    if not origins:
        raise _UsageError(
            "the ledger holds no logs yet; a log's key name is set by its first entry"
        )
    for origin in origins:
        print(verifier_key(key_name_for(origin), public))
    return EXIT_OK


def _guarded(run: Command) -> Command:
    """Wrap a command so that user-fixable failures end in one line and exit code 2."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            code = run(args)
        except (_UsageError, StoreError, SigningKeyError, LedgerError) as exc:
            print(f"sluis audit {args.audit_command}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(
                f"sluis audit {args.audit_command}: {where}{exc.strerror or exc}", file=sys.stderr
            )
            return EXIT_ERROR
        return code

    return wrapper


def _index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"data directory (default: $SLUIS_DATA_DIR or {DEFAULT_DATA_DIR});"
        f" the ledger is DIR/{DB_FILE}, the signing key in DIR-keys",
    )
    common.add_argument(
        "--database-url",
        metavar="URL",
        help="read the ledger from PostgreSQL instead (default: $SLUIS_DATABASE_URL;"
        " password: $SLUIS_DATABASE_PASSWORD or libpq's PGPASSWORD/PGPASSFILE)",
    )
    audit = sub.add_parser(
        "audit",
        help="verify, export and prove the tamper-evident transfer ledger",
        description="Check the transfer ledger: signed Merkle logs, one per tenant.",
    )
    cmds = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = cmds.add_parser(
        "verify",
        parents=[common],
        help="recompute every log and check its signed checkpoints",
        description="Exit 0 when intact, 1 when a log fails (naming the first bad entry).",
    )
    verify.add_argument("--tenant", metavar="T", help="only this tenant (default: all)")
    verify.add_argument(
        "--public-key", metavar="FILE", help="trusted public key (PEM, or a vkey line)"
    )
    verify.add_argument(
        "--checkpoint", metavar="FILE", help="a checkpoint you kept earlier: detects truncation"
    )
    verify.add_argument(
        "--checkpoints",
        metavar="DIR",
        help="a folder of checkpoints you kept (notes, or the JSON the checkpoints routes"
        " return): each must verify and agree with the log, so a rewritten history is caught",
    )
    verify.add_argument("--export", metavar="FILE", help="verify an export file, without a DB")
    verify.add_argument(
        "--resume",
        metavar="FILE",
        help="your own record of where the last verification ended: read only the entries"
        " after it (if it still fits its signed checkpoint), then record where this one"
        " ended; created on first use. Without it every entry is read",
    )
    verify.set_defaults(run=_guarded(_run_verify))

    export = cmds.add_parser(
        "export",
        parents=[common],
        help="write logs, checkpoints and leaf hashes as JSON Lines",
    )
    export.add_argument("--tenant", metavar="T", help="only this tenant (default: all)")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=_guarded(_run_export))

    prove = cmds.add_parser(
        "prove",
        parents=[common],
        help="print an inclusion proof for one entry (JSON)",
        description="The proof is anchored to a signed checkpoint a third party can check.",
    )
    prove.add_argument("index", type=_index, metavar="INDEX", help="entry index")
    prove.add_argument("--tenant", metavar="T", required=True)
    prove.add_argument("--size", type=_index, metavar="N", help="tree size (default: latest)")
    prove.set_defaults(run=_guarded(_run_prove))

    pubkey = cmds.add_parser(
        "pubkey",
        parents=[common],
        help="print the checkpoint signing public key",
    )
    pubkey.add_argument(
        "--format",
        choices=("pem", "vkey"),
        default="pem",
        help="PEM (default), or signed-note verifier keys (name+keyid+key), one per log,"
        " for golang.org/x/mod/sumdb/note and witnesses",
    )
    pubkey.add_argument("--tenant", metavar="T", help="vkey: only this tenant's log")
    pubkey.set_defaults(run=_guarded(_run_pubkey))
