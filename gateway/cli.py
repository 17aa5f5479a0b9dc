"""The `sluis` command.

Each sub-command lives in the module that owns its job and registers itself here through a
`register(subparsers)` function, so this file stays a table of contents. Commands return an
exit code; anything a user can get wrong ends in a one-line message on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gateway import __version__, audit_cli, demo, keys, offline_map, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluis",
        description="Sluis privacy gateway: minimise HR/CRM records, record every transfer.",
    )
    parser.add_argument("--version", action="version", version=f"sluis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.register(sub)
    serve.register(sub)
    offline_map.register(sub)
    keys.register(sub)
    audit_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
