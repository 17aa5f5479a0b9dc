"""`sluis db`: the database's schema (`status`, `upgrade`), the move from SQLite to
PostgreSQL (`copy`, in `gateway.cli.db_copy`), and erasures put back after a restore
(`reapply`, in `gateway.cli.db_reapply`).

An operator upgrades on purpose before starting a new release on several replicas, and
wants to know what an upgrade would do before it does it; `sluis serve` upgrades at start
too, so these are the same migrations (`gateway.store.migrate`), run by hand. Exit codes:
0 done, 1 a copy that did not verify, 2 the command could not run (a one-line message:
no database, a schema newer than this code, a refused copy).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Final

from gateway.cli.db_copy import copy_and_verify, where
from gateway.cli.db_reapply import add_parser as add_reapply
from gateway.cli.db_reapply import run_reapply
from gateway.keys.signing import SigningKeyError
from gateway.ledger.log import LedgerError
from gateway.runtime.config import ConfigError, Settings, load_settings
from gateway.runtime.storage import open_database, sqlite_path
from gateway.store import migrate
from gateway.store.protocols import StoreError, StoreMissing

EXIT_OK: Final = 0
EXIT_ERROR: Final = 2

Command = Callable[[argparse.Namespace], int]


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings `--config` and the environment give, with `--data-dir` on top."""
    settings = load_settings(args.config)
    data_dir = getattr(args, "data_dir", None)
    if data_dir:
        settings = settings.model_copy(update={"data_dir": Path(data_dir)})
    return settings


def _pending(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _run_status(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    known = migrate.migrations("postgres" if settings.database_url else "sqlite")
    try:
        db = open_database(settings, create=False)
    except StoreMissing:
        # Nothing to look at yet: `upgrade` (or the first `serve`) makes it.
        print(f"database: {sqlite_path(settings)} (not created yet)")
        print(f"schema version: 0 (this Sluis knows up to {len(known)})")
        print(f"pending: {_pending([f'{m.version:04d}_{m.name}' for m in known])}")
        return EXIT_OK
    with closing(db):
        state = migrate.status(db)
        print(f"database: {where(db)}")
        print(f"schema version: {state.current} (this Sluis knows up to {state.latest})")
        migrate.check_not_newer(db)
        print(f"pending: {_pending([f'{m.version:04d}_{m.name}' for m in state.pending])}")
    return EXIT_OK


def _run_upgrade(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with closing(open_database(settings, create=True)) as db:
        shown = where(db)
        applied = migrate.upgrade(db)
        if not applied:
            print(f"{shown}: already at version {migrate.current_version(db)}")
            return EXIT_OK
        for m in applied:
            print(f"{shown}: applied {m.version:04d}_{m.name}")
        print(f"{shown}: now at version {applied[-1].version}")
    return EXIT_OK


def _run_copy(args: argparse.Namespace) -> int:
    return copy_and_verify(settings_of(args), args.to)


def _run_reapply(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    return run_reapply(args, settings)


def _guarded(run: Command) -> Command:
    """User-fixable failures end in one line on stderr and exit code 2."""

    def wrapper(args: argparse.Namespace) -> int:
        name = f"sluis db {args.db_command}"
        try:
            return run(args)
        except (ConfigError, StoreError, SigningKeyError, LedgerError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
        except OSError as exc:
            where_ = f"{exc.filename}: " if exc.filename else ""
            print(f"{name}: {where_}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR

    return wrapper


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", help="sluis.toml (optional; SLUIS_* variables apply too)"
    )
    db = sub.add_parser(
        "db",
        help="the database: schema status and upgrades, and copying SQLite to PostgreSQL",
        description="The database the settings name (SQLite in data_dir, or database_url).",
    )
    cmds = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    status = cmds.add_parser(
        "status",
        parents=[common],
        help="which database, its schema version, and the migrations pending",
    )
    status.set_defaults(run=_guarded(_run_status))

    upgrade = cmds.add_parser(
        "upgrade",
        parents=[common],
        help="apply the pending schema migrations (all in one transaction)",
        description="Exit 2, changing nothing, when the schema is newer than this Sluis.",
    )
    upgrade.set_defaults(run=_guarded(_run_upgrade))

    reapply = add_reapply(cmds, common)
    reapply.set_defaults(run=_guarded(_run_reapply))

    copy = cmds.add_parser(
        "copy",
        parents=[common],
        help="copy this SQLite installation into an empty PostgreSQL database, and verify it",
        description=(
            "Copy data_dir/sluis.db into the PostgreSQL database at --to (upgraded to the"
            " current schema first; it must hold no Sluis rows), in one transaction, then"
            " recompute every tenant's ledger on it and compare it and the row counts with"
            " the source. Stop `sluis serve` first. Exit 0 verified, 1 not verified, 2 the"
            " copy could not run (nothing copied)."
        ),
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql://user@host:5432/db (password: SLUIS_DATABASE_PASSWORD or libpq's"
        " PGPASSWORD/PGPASSFILE); ?options=-csearch_path%%3DNAME picks a schema",
    )
    copy.add_argument(
        "--data-dir", metavar="DIR", help="the installation to copy (default: data_dir)"
    )
    copy.set_defaults(run=_guarded(_run_copy))
