"""`sluis subjects` and `sluis requests` against a gateway answering on 127.0.0.1: the CLI is
a client of the API, so it gets what the token's role allows, needs a fresh second factor
to erase, and leaves each step on the ledger under the token's account."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli.main import main
from tests.api.conftest import Api
from tests.api.test_subjects import T, two_sources
from tests.principals import code, email_of


async def sluis(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return result, out, err


async def test_a_request_from_a_terminal_goes_through_the_api(
    api: Api, aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    person, _ = await two_sources(api, aiohttp_server)
    assert api.people is not None
    token = tmp_path / "token"
    token.write_text(api.people.token("acme", "admin", step_up=False) + "\n")
    url = str(api.client.make_url("/"))
    base = ["--tenant", "acme", "--url", url, "--token-file", str(token)]

    monkeypatch.setattr("sys.stdin", io.StringIO(person["Email_werk"] + "\n"))
    result, out, _ = await sluis(capsys, "subjects", "search", *base, "--email", "-")
    assert result == 0, out
    (found,) = orjson.loads(out)["subjects"]
    sid = found["subject_id"]
    assert found["sources"] == ["hr", "hr2"]

    csv_file = tmp_path / "subject.csv"
    result, _, _ = await sluis(capsys, "subjects", "export", *base, sid,
                               "--format", "csv", "-o", str(csv_file))  # fmt: skip
    assert result == 0 and person["Email_werk"].lower() in csv_file.read_text().lower()

    result, out, _ = await sluis(capsys, "subjects", "rectify", *base, "--no-sync", sid)
    assert result == 0 and [s["connector"] for s in orjson.loads(out)["sources"]] == ["hr", "hr2"]

    result, out, _ = await sluis(capsys, "requests", "open", *base, "--kind", "erasure",
                                 "--subject", sid)  # fmt: skip
    assert result == 0, out
    request = orjson.loads(out)["id"]

    # Erasure wants a fresh second factor: without one nothing is asked.
    result, _, err = await sluis(capsys, "subjects", "erase", *base, sid)
    assert result == 2 and "--totp" in err
    result, out, _ = await sluis(capsys, "subjects", "erase", *base, sid, "--totp", code())
    assert result == 0, out
    assert orjson.loads(out)["erased"][0]["subject_id"] == sid
    result, out, _ = await sluis(capsys, "subjects", "suppressions", *base)
    assert result == 0 and sid in out

    result, out, _ = await sluis(capsys, "requests", "close", *base, request,
                                 "--outcome", "fulfilled")  # fmt: skip
    assert result == 0 and orjson.loads(out)["state"] == "completed"
    result, out, _ = await sluis(capsys, "requests", "list", *base, "--state", "completed")
    assert result == 0 and request in out
    result, out, _ = await sluis(capsys, "requests", "show", *base, request)
    assert result == 0 and orjson.loads(out)["outcome"] == "fulfilled"

    # Each step is on the ledger under the token's account, never the email.
    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body["entries"]
    actions = [e["entry"]["action"] for e in ledger if "action" in e["entry"]]
    for action in ("subject.searched", "subject.exported", "subject.resynced",
                   "request.opened", "subject.erased", "request.closed"):  # fmt: skip
        assert action in actions
    assert person["Email_werk"].lower() not in str(ledger).lower()
    assert email_of("admin", "acme") not in str(ledger)


async def test_the_cli_gets_no_more_than_its_token_and_says_why(
    api: Api, aiohttp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await two_sources(api, aiohttp_server)
    assert api.people is not None
    token = tmp_path / "token"
    token.write_text(api.people.token("acme", "viewer"))
    url = str(api.client.make_url("/"))
    base = ["--tenant", "acme", "--url", url, "--token-file", str(token)]
    result, _, err = await sluis(capsys, "subjects", "search", *base, "--email", "a@b.example")
    assert result == 1 and "refused: 403" in err
    result, _, err = await sluis(capsys, "requests", "open", *base, "--kind", "nonsense")
    assert result == 1 and "refused: 4" in err
    monkeypatch.delenv("SLUIS_API_TOKEN", raising=False)
    result, _, err = await sluis(capsys, "requests", "list", "--tenant", "acme", "--url", url)
    assert result == 2 and "no API token" in err
    monkeypatch.setenv("SLUIS_API_TOKEN", "whatever-token-value")
    result, _, err = await sluis(capsys, "requests", "list", "--tenant", "acme",
                                 "--url", "http://127.0.0.1:9")  # fmt: skip
    assert result == 2 and "cannot reach the gateway" in err
    result, _, err = await sluis(capsys, "requests", "list", "--tenant", "acme", "--url", url)
    assert result == 1 and "refused: 401" in err
