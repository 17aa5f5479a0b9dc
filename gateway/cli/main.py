"""The `sluis` command.

Each sub-command lives in the module that owns its job and registers itself through a
`register(subparsers)` function, so this file stays a table of contents. Only the module
of the command being run is imported: `sluis map` streams a large export in a small,
constant memory and should not load the web server to do it. Commands return an exit
code; anything a user can get wrong ends in a one-line message on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Final

from gateway import __version__

#: command → the module that registers it (in the order `sluis --help` lists them), or
#: `module:function` where one module registers several commands.
COMMANDS: Final = {
    "demo": "gateway.cli.demo",
    "serve": "gateway.cli.serve",
    "map": "gateway.cli.map",
    "keygen": "gateway.cli.keygen",
    "audit": "gateway.cli.audit",
    "report": "gateway.cli.report",
    "subjects": "gateway.cli.dsr:register_subjects",
    "requests": "gateway.cli.dsr:register_requests",
    "retention": "gateway.cli.retention",
    "db": "gateway.cli.db",
    "emulator": "gateway.cli.emulator",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or just for `only` (what a run needs)."""
    parser = argparse.ArgumentParser(
        prog="sluis",
        description="Sluis privacy gateway: minimise HR/CRM records, record every transfer.",
    )
    parser.add_argument("--version", action="version", version=f"sluis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, where in COMMANDS.items():
        if only is None or name == only:
            module, _, function = where.partition(":")
            getattr(importlib.import_module(module), function or "register")(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("sluis: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`sluis map ... | head`): stop quietly, and keep Python from
        # complaining when it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
