"""`sluis keygen`: write a new subject key file (see `gateway.keys.subject`)."""

from __future__ import annotations

import argparse
import sys

from gateway.keys.subject import write_key_file


def _run_keygen(args: argparse.Namespace) -> int:
    try:
        write_key_file(args.output)
    except FileExistsError:
        print(f"sluis keygen: {args.output} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sluis keygen: {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote a new subject key to {args.output} (mode 0600)", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "keygen",
        help="create a subject key file (keyed pseudonymous ids)",
        description="Create a random 256-bit subject key file with owner-only permissions.",
    )
    parser.add_argument("--output", "-o", required=True, metavar="PATH")
    parser.set_defaults(run=_run_keygen)
