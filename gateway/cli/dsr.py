"""`sluis subjects` and `sluis requests`: data-subject requests from a terminal.

These are a client of the gateway's own API (`/admin/v1/tenants/{t}/subjects/...` and
`.../requests`), not a second way into the database: a person's data is read and changed
only by a principal the API knows, with that principal's role, a fresh second factor where
the API asks for one (erasure, restriction, lifting: `--totp`), and every step on the
tenant's ledger under that principal's id. An operator with shell access to the host gets
no more than their API token allows, and a DPO can script the requests the console would
otherwise take clicks for.

The token is read from `--token-file` or `$SLUIS_API_TOKEN` (never a command-line value,
which would sit in the shell's history and the process list); the gateway's address from
`--url` or `$SLUIS_URL` (default http://127.0.0.1:8080). An email to look up is best given
on standard input (`--email -`), for the same reason. Answers are printed as the API gives
them (JSON, or CSV for `export --format csv`). Exit 0 when the API answered 2xx, 1 when it
answered with a problem (its detail printed), 2 when it could not be asked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

DEFAULT_URL: Final = "http://127.0.0.1:8080"
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_ERROR: Final = 2
TIMEOUT_SECONDS: Final = 60.0


class _CannotAsk(Exception):
    """The API could not be asked (no token, no answer); printed as one line, exit 2."""


class _Refused(Exception):
    """The API answered with a problem; its status and detail are printed, exit 1."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")


class _Client:
    """The gateway's admin API for one tenant, with one bearer token."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.base = (args.url or os.environ.get("SLUIS_URL") or DEFAULT_URL).rstrip("/")
        if urllib.parse.urlsplit(self.base).scheme not in {"http", "https"}:
            raise _CannotAsk("--url must be an http(s) address of the gateway")
        self.token = _token(args.token_file)
        self.tenant = urllib.parse.quote(args.tenant, safe="")

    def call(self, method: str, path: str, body: object = None) -> bytes:
        """The answer's body for a 2xx; `_Refused` with the problem's detail otherwise."""
        url = f"{self.base}/admin/v1/tenants/{self.tenant}{path}"
        return self.raw(method, url, body)

    def raw(self, method: str, url: str, body: object = None) -> bytes:
        data = None if body is None else orjson.dumps(body)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - checked http(s)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as reply:  # noqa: S310
                return bytes(reply.read())
        except urllib.error.HTTPError as exc:
            raise _Refused(exc.code, _detail(exc.read())) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _CannotAsk(f"cannot reach the gateway at {self.base} ({reason})") from None

    def step_up(self, code: str | None) -> None:
        """Prove a fresh second factor on this token (the API asks for one to erase,
        restrict or lift)."""
        if code is None:
            raise _CannotAsk("this needs a fresh second factor: pass --totp CODE")
        self.raw("POST", f"{self.base}/admin/v1/step-up", {"code": code})


def _token(path: str | None) -> str:
    if path is not None:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _CannotAsk(f"{path}: cannot read the token ({exc})") from None
    else:
        token = os.environ.get("SLUIS_API_TOKEN", "").strip()
    if not token:
        raise _CannotAsk("no API token: pass --token-file FILE or set SLUIS_API_TOKEN")
    return token


def _detail(body: bytes) -> str:
    try:
        problem = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "the gateway answered with an error"
    if not isinstance(problem, dict):
        return "the gateway answered with an error"
    detail = str(problem.get("detail") or problem.get("title") or "error")
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        fields = ", ".join(str(e.get("field", "?")) for e in errors if isinstance(e, dict))
        detail += f" ({fields})"
    return detail


def _show(body: bytes, out: str | None = None) -> None:
    try:
        text = json.dumps(orjson.loads(body), indent=2, ensure_ascii=False) + "\n"
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", errors="replace")
    if out is not None and out != "-":
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _email(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


# --------------------------------------------------------------------------- subjects


def _search(api: _Client, args: argparse.Namespace) -> bytes:
    if args.email is not None:
        return api.call("POST", "/subjects/search", {"email": _email(args.email)})
    if args.connector is None or not args.identity:
        raise _CannotAsk("give --email, or --connector with --identity")
    body = {"connector": args.connector, "identity": args.identity}
    return api.call("POST", "/subjects/search", body)


def _export(api: _Client, args: argparse.Namespace) -> bytes:
    body = {"subject_ids": args.subject_ids, "format": args.format}
    return api.call("POST", "/subjects/export", body)


def _rectify(api: _Client, args: argparse.Namespace) -> bytes:
    body = {"subject_ids": args.subject_ids, "sync": not args.no_sync}
    return api.call("POST", "/subjects/rectify", body)


def _erase(api: _Client, args: argparse.Namespace) -> bytes:
    api.step_up(args.totp)
    return api.call("POST", "/subjects/erase", {"subject_ids": args.subject_ids})


def _restrict(api: _Client, args: argparse.Namespace) -> bytes:
    api.step_up(args.totp)
    return api.call("POST", "/subjects/restrict", {"subject_ids": args.subject_ids})


def _lift(api: _Client, args: argparse.Namespace) -> bytes:
    api.step_up(args.totp)
    return api.call("DELETE", f"/suppressions/{args.subject_id}")


def _suppressions(api: _Client, _: argparse.Namespace) -> bytes:
    return api.call("GET", "/suppressions")


# --------------------------------------------------------------------------- requests


def _requests(api: _Client, args: argparse.Namespace) -> bytes:
    query = f"?state={urllib.parse.quote(args.state)}" if args.state else ""
    return api.call("GET", f"/requests{query}")


def _open(api: _Client, args: argparse.Namespace) -> bytes:
    body: dict[str, Any] = {"kind": args.kind, "subject_ids": args.subject or []}
    if args.received_at:
        body["received_at"] = args.received_at
    return api.call("POST", "/requests", body)


def _request(api: _Client, args: argparse.Namespace) -> bytes:
    return api.call("GET", f"/requests/{urllib.parse.quote(args.request, safe='')}")


def _close(api: _Client, args: argparse.Namespace) -> bytes:
    state = "rejected" if args.rejected else "completed"
    path = f"/requests/{urllib.parse.quote(args.request, safe='')}/close"
    return api.call("POST", path, {"state": state, "outcome": args.outcome})


Ask = Callable[[_Client, argparse.Namespace], bytes]


def _runner(ask: Ask) -> Callable[[argparse.Namespace], int]:
    """A command: ask the API, print its answer; one line and an exit code otherwise."""

    def run(args: argparse.Namespace) -> int:
        try:
            body = ask(_Client(args), args)
        except _CannotAsk as exc:
            print(f"sluis: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except _Refused as exc:
            print(f"sluis: the gateway refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        _show(body, getattr(args, "output", None))
        return EXIT_OK

    return run


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tenant", metavar="T", required=True)
    common.add_argument(
        "--url", metavar="URL", help=f"the gateway (default: $SLUIS_URL or {DEFAULT_URL})"
    )
    common.add_argument(
        "--token-file", metavar="FILE", help="an API token (default: $SLUIS_API_TOKEN)"
    )
    return common


def register_subjects(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()
    ids = argparse.ArgumentParser(add_help=False)
    ids.add_argument("subject_ids", nargs="+", metavar="SUBJECT_ID", help="keyed ids (a search's)")
    totp = argparse.ArgumentParser(add_help=False)
    totp.add_argument("--totp", metavar="CODE", help="a current code: a fresh second factor")

    subjects = sub.add_parser(
        "subjects",
        help="find, export, rectify, erase or restrict a person (through the API)",
        description=(__doc__ or "").split("\n\n")[1],
    )
    cmds = subjects.add_subparsers(dest="subjects_command", metavar="ACTION", required=True)
    search = cmds.add_parser("search", parents=[common], help="find a person's keyed ids")
    search.add_argument("--email", metavar="EMAIL", help="work email; - reads it from stdin")
    search.add_argument("--connector", metavar="C", help="with --identity: a source")
    search.add_argument("--identity", nargs="+", metavar="V", help="their identity in it")
    search.set_defaults(run=_runner(_search))
    export = cmds.add_parser("export", parents=[common, ids], help="what Sluis holds (Art. 15/20)")
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    export.set_defaults(run=_runner(_export))
    rectify = cmds.add_parser(
        "rectify", parents=[common, ids], help="where to correct them; sync the correction"
    )
    rectify.add_argument("--no-sync", action="store_true", help="only say where to correct")
    rectify.set_defaults(run=_runner(_rectify))
    for name, ask, text in (
        ("erase", _erase, "erase them (Art. 17)"),
        ("restrict", _restrict, "restrict their processing (Art. 18)"),
    ):
        cmds.add_parser(name, parents=[common, ids, totp], help=text).set_defaults(run=_runner(ask))
    lift = cmds.add_parser("lift", parents=[common, totp], help="lift a suppression")
    lift.add_argument("subject_id", metavar="SUBJECT_ID")
    lift.set_defaults(run=_runner(_lift))
    cmds.add_parser("suppressions", parents=[common], help="erased and restricted people"
                    ).set_defaults(run=_runner(_suppressions))  # fmt: skip


def register_requests(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _common()
    requests = sub.add_parser("requests", help="data-subject requests as records (through the API)")
    rcmds = requests.add_subparsers(dest="requests_command", metavar="ACTION", required=True)
    listing = rcmds.add_parser("list", parents=[common], help="oldest due first")
    listing.add_argument("--state", choices=("open", "completed", "rejected"))
    listing.set_defaults(run=_runner(_requests))
    opened = rcmds.add_parser("open", parents=[common], help="enter a request received")
    opened.add_argument("--kind", required=True, help="access, erasure, rectification, ...")
    opened.add_argument("--subject", nargs="+", metavar="SUBJECT_ID", help="if found already")
    opened.add_argument("--received-at", metavar="TIME", help="ISO 8601 with zone (default: now)")
    opened.set_defaults(run=_runner(_open))
    show = rcmds.add_parser("show", parents=[common], help="one request, with its receipts")
    show.add_argument("request", metavar="REQUEST")
    show.set_defaults(run=_runner(_request))
    close = rcmds.add_parser("close", parents=[common], help="complete or reject a request")
    close.add_argument("request", metavar="REQUEST")
    close.add_argument("--outcome", required=True,
                       help="fulfilled or nothing-held; with --rejected the ground")  # fmt: skip
    close.add_argument("--rejected", action="store_true", help="reject (Art. 12(5), 12(6))")
    close.set_defaults(run=_runner(_close))
