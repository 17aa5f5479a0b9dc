"""CSV over SFTP: what the contract suite cannot know about a file source.

Host-key pinning, the address rules, which file is read (pattern, newest, still being
written, size cap), the export dialects (Windows-1252, UTF-8 with a byte-order mark),
quarantine by file and line, resuming at a cursor, an unchanged file left alone, and the
engine's full sync per file with its mass-delete guard. Everything runs against the real
SFTP emulator on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncssh
import pytest
from aiohttp import web

from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL
from connectors.netguard import PublicOnlyConnector
from connectors.registry import connector_type
from connectors.sftp.client import UNNAMED_COLUMN, SftpConnector, reportable_name
from connectors.sftp.emulator import (
    EMULATOR_CREDENTIALS,
    EMULATOR_PASSWORD,
    EMULATOR_USER,
    ENVIRONMENT,
    HOST_KEY_FINGERPRINT,
    base_url,
    make_app,
)
from connectors.sftp.synthetic import SENSITIVE_FIELDS, export_bytes
from gateway.ledger.audit import Actor
from gateway.minimise.egress import is_reportable_field_name
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.sync.preview import make_preview
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.contract.suite import leaked, sync
from tests.principals import system

KEY = b"sluis sftp tests: the tenant key"
ADMIN = Actor("acc_0123456789abcdef", "admin")
ONCE = RetryPolicy(attempts=1)
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01)


@pytest.fixture
async def emulator(aiohttp_server: Callable[..., Any]) -> web.Application:
    app = make_app(people=120, seed=5)
    await aiohttp_server(app, host="127.0.0.1")
    return app


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _connector(
    session: aiohttp.ClientSession,
    url: str,
    *,
    credentials: dict[str, str] | None = None,
    retry: RetryPolicy = ONCE,
    **settings: Any,
) -> SftpConnector:
    config = ConnectorConfig(
        type="sftp",
        base_url=url,
        credentials=credentials if credentials is not None else dict(EMULATOR_CREDENTIALS),
        settings={"pattern": "medewerkers_*.csv", "settle_seconds": 0, **settings},
    )
    projector = Projector(load_mapping(bundled_mapping("sftp")), KEY)
    return SftpConnector(config, projector, session, retry=retry)


def _dir(app: web.Application) -> Path:
    return app[ENVIRONMENT].directory


def _drop(app: web.Application, name: str, data: bytes, *, mtime_ahead: int = 60) -> Path:
    path = _dir(app) / name
    path.write_bytes(data)
    when = int(datetime.now(UTC).timestamp()) + mtime_ahead
    os.utime(path, (when, when))
    return path


async def test_a_host_key_other_than_the_pinned_one_is_refused(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    credentials = {**EMULATOR_CREDENTIALS, "host_key": other}
    with pytest.raises(ConnectorError) as caught:
        await sync(_connector(session, base_url(emulator), credentials=credentials))
    assert caught.value.kind == "auth"
    assert "does not match the pinned host_key" in str(caught.value)
    assert HOST_KEY_FINGERPRINT in str(caught.value), "the error shows the key it was offered"
    assert _log(emulator) == [], "nothing was read from a server that is not the pinned one"


async def test_the_pin_is_required_and_may_be_pasted_as_ssh_keygen_prints_it(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    without = {k: v for k, v in EMULATOR_CREDENTIALS.items() if k != "host_key"}
    with pytest.raises(ConnectorError) as caught:
        _connector(session, base_url(emulator), credentials=without)
    assert caught.value.kind == "config"
    assert "host_key" in str(caught.value)
    pasted = f"256 {HOST_KEY_FINGERPRINT} root@hr-export (ED25519)"
    run = await sync(
        _connector(session, base_url(emulator), credentials={**without, "host_key": pasted})
    )
    assert run.fetched == 120


async def test_password_login_and_wrong_password(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    by_password = {
        "username": EMULATOR_USER,
        "password": EMULATOR_PASSWORD,
        "host_key": HOST_KEY_FINGERPRINT,
    }
    run = await sync(_connector(session, base_url(emulator), credentials=by_password))
    assert run.fetched == 120
    wrong = {**by_password, "password": "not-it"}
    with pytest.raises(ConnectorError) as caught:
        await sync(_connector(session, base_url(emulator), credentials=wrong))
    assert caught.value.kind == "auth"
    assert "not-it" not in str(caught.value)


async def test_private_addresses_are_refused_unless_allowed(
    emulator: web.Application,
) -> None:
    async with aiohttp.ClientSession(connector=PublicOnlyConnector()) as public_only:
        for url in (base_url(emulator), "sftp://localhost:22/exports", "sftp://10.1.2.3/x"):
            with pytest.raises(ConnectorError) as caught:
                await sync(_connector(public_only, url))
            assert caught.value.kind == "config"
            assert "allow_private_sources" in str(caught.value)
    assert _log(emulator) == []


def _log(app: web.Application) -> list[Any]:
    return list(app[CONTROL].log)


async def test_the_newest_matching_file_is_read_and_others_are_not(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    rows = emulator[ENVIRONMENT].rows[:7]
    _drop(emulator, "medewerkers_zz_newest.csv", export_bytes(rows))
    _drop(emulator, "salarissen.csv", export_bytes(emulator[ENVIRONMENT].rows), mtime_ahead=120)
    run = await sync(_connector(session, base_url(emulator)))
    assert run.fetched == 7
    assert run.watermark is not None
    assert run.watermark.endswith("|medewerkers_zz_newest.csv")
    with pytest.raises(ConnectorError) as caught:
        await sync(_connector(session, base_url(emulator), pattern="*.xlsx"))
    assert caught.value.kind == "config"
    assert "nothing was synced" in str(caught.value)


async def test_an_unchanged_file_is_not_read_again(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    connector = _connector(session, base_url(emulator))
    first = await sync(connector)
    reads = len(_log(emulator))
    again = await connector.fetch_page(PageRequest(SyncMode.FULL, since=first.watermark))
    assert again.unchanged
    assert again.last
    assert again.fetched == 0
    assert len(_log(emulator)) == reads, "the unchanged file was downloaded"
    emulator[ENVIRONMENT].touch(1)
    changed = await connector.fetch_page(PageRequest(SyncMode.FULL, since=first.watermark))
    assert not changed.unchanged
    assert changed.fetched > 0


async def test_a_file_still_being_written_is_not_read(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    path = _drop(emulator, "medewerkers_growing.csv", export_bytes(emulator[ENVIRONMENT].rows))

    async def keep_writing() -> None:
        for _ in range(10):
            await asyncio.sleep(0.03)
            with path.open("ab") as out:
                out.write(b"x" * 100)

    writer = asyncio.create_task(keep_writing())
    with pytest.raises(ConnectorError) as caught:
        await sync(_connector(session, base_url(emulator), settle_seconds=0.2))
    await writer
    assert caught.value.kind == "unavailable"
    assert caught.value.retryable
    assert "still being written" in str(caught.value)
    assert _log(emulator) == []


async def test_min_age_passes_over_young_files(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ConnectorError) as caught:
        await sync(_connector(session, base_url(emulator), min_age_seconds=7200))
    assert caught.value.kind == "config"
    old = _drop(emulator, "medewerkers_old.csv", export_bytes(emulator[ENVIRONMENT].rows[:3]))
    os.utime(old, (0, 10_000))
    run = await sync(_connector(session, base_url(emulator), min_age_seconds=7200))
    assert run.fetched == 3


async def test_windows_1252_and_bom_exports_read_alike(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    rows = [
        dict(r, Voornaam="Zoë", Tussenvoegsel="", Achternaam="Çelik")
        for r in emulator[ENVIRONMENT].rows[:5]
    ]
    names = set()
    for n, encoding in enumerate(("cp1252", "utf-8-sig")):
        data = export_bytes(rows, encoding=encoding)  # type: ignore[arg-type]
        _drop(emulator, f"medewerkers_x{n}.csv", data, mtime_ahead=60 + n)
        run = await sync(_connector(session, base_url(emulator)))
        assert run.rejected == []
        names.update((s["first_name"], s["last_name"]) for s in run.subjects)
    assert names == {("Zoë", "Çelik")}


async def test_bad_rows_are_quarantined_by_file_and_line_without_values(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    rows = emulator[ENVIRONMENT].rows[:4]
    good = export_bytes(rows, encoding="utf-8-sig").decode("utf-8-sig").splitlines()
    bsn = rows[1]["BSN"]
    good[2] = good[2] + ";extra;" + bsn  # too many values on line 3
    text = "\r\n".join(good).replace(rows[3]["E-mail"], "")  # no work email on line 5
    _drop(emulator, "medewerkers_bad.csv", text.encode("utf-8"))
    run = await sync(_connector(session, base_url(emulator)))
    assert run.fetched == 4
    assert len(run.subjects) == 2
    assert sorted(run.rejected) == sorted(
        [
            "medewerkers_bad.csv line 3: 21 values for 19 columns",
            next(r for r in run.rejected if "line 5" in r),
        ]
    )
    assert any("line 5" in r and "email" in r for r in run.rejected)
    assert leaked({bsn, rows[3]["E-mail"]}, *run.rejected, *run.trace) == []


async def test_the_other_columns_never_reach_a_page(
    emulator: web.Application, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    connector = _connector(session, base_url(emulator), page_size=50)
    run = await sync(connector)
    values = {r[k] for r in emulator[ENVIRONMENT].rows for k in SENSITIVE_FIELDS if r.get(k)}
    assert leaked(values, *run.trace, caplog.text) == []
    assert run.pages == 3


async def test_an_export_over_the_size_cap_is_not_read(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ConnectorError) as caught:
        await sync(_connector(session, base_url(emulator), max_file_bytes=2048))
    assert caught.value.kind == "too_large"
    assert _log(emulator) == []


async def test_a_run_resumes_at_its_cursor_and_refuses_a_changed_file(
    emulator: web.Application, session: aiohttp.ClientSession
) -> None:
    whole = await sync(_connector(session, base_url(emulator), page_size=50))
    first = await _connector(session, base_url(emulator), page_size=50).fetch_page(
        PageRequest(SyncMode.FULL)
    )
    assert first.next_cursor is not None
    # Another replica (a new connector) carries on from the committed cursor.
    later = _connector(session, base_url(emulator), page_size=50)
    rest = await later.fetch_page(PageRequest(SyncMode.FULL, cursor=first.next_cursor))
    ids = [s["subject_id"] for s in first.subjects + rest.subjects]
    assert ids == [s["subject_id"] for s in whole.subjects][: len(ids)]
    emulator[ENVIRONMENT].touch(1)
    old = _dir(emulator) / whole.watermark.rsplit("|", 1)[1]  # type: ignore[union-attr]
    old.write_bytes(old.read_bytes() + b"\r\n")
    with pytest.raises(ConnectorError) as caught:
        await _connector(session, base_url(emulator), page_size=50).fetch_page(
            PageRequest(SyncMode.FULL, cursor=first.next_cursor)
        )
    assert caught.value.kind == "config"
    assert "changed or gone" in str(caught.value)


async def test_the_emulator_account_is_read_only(emulator: web.Application) -> None:
    key = asyncssh.import_private_key(EMULATOR_CREDENTIALS["private_key"])
    async with (
        asyncssh.connect(
            "127.0.0.1",
            emulator[ENVIRONMENT].port,
            username=EMULATOR_USER,
            client_keys=[key],
            known_hosts=None,
            agent_path=None,
            config=[],
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        names = sorted(await sftp.listdir("/exports"))
        assert "LEESMIJ.txt" in names
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.remove("/exports/LEESMIJ.txt")
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            async with sftp.open("/exports/new.csv", "wb"):
                pass


def test_cut_column_names_follow_the_doors_rule() -> None:
    for name in ("BSN", "Bruto salaris", "", "a" * 65, "jan@example.nl", "123 456", "a\x00b"):
        assert (reportable_name(name) != UNNAMED_COLUMN) == is_reportable_field_name(name)


def test_the_type_is_full_only_with_an_sftp_address() -> None:
    kind = connector_type("sftp")
    assert kind.full_only
    assert kind.url_schemes == ("sftp",)
    assert set(kind.credential_keys) == {"username", "host_key"}


# --------------------------------------------------------------------------- the engine


@pytest.fixture
async def services(tmp_path: Path, emulator: web.Application) -> AsyncIterator[Services]:
    settings = Settings(
        data_dir=tmp_path / "data", admin_token="t" * 32, scheduler=False,
        allow_private_sources=True,
    )  # fmt: skip
    opened = Services.open(settings, retry=FAST)
    now = datetime.now(UTC)
    by = system(opened, "acme")
    create_tenant(opened.store, opened.box, "acme", "Acme BV", now, by=by)
    create_connector(
        opened.store, opened.box, tenant="acme", by=by, connector_id="hr", type_name="sftp",
        base_url=base_url(emulator), credentials=dict(EMULATOR_CREDENTIALS),
        mapping_text=bundled_mapping("sftp").read_text(), settings={"settle_seconds": 0},
        now=now,
    )  # fmt: skip
    grant(opened.store, by=by, connector="hr", purpose="test", now=now)
    yield opened
    opened.close()


async def test_each_file_is_a_full_sync_guarded_against_mass_deletes(
    services: Services, emulator: web.Application
) -> None:
    engine = services.engine
    first = await engine.sync("acme", "hr")
    assert first.status == "succeeded", first.error
    assert first.mode == "full"
    assert first.counts["upserted"] == 120

    same = await engine.sync("acme", "hr", SyncMode.INCREMENTAL)
    assert same.status == "succeeded", same.error
    assert same.mode == "full", "a file source always syncs in full"
    assert same.counts["fetched"] == 0
    assert same.counts["deleted"] == 0, "an unchanged file is no evidence of leavers"

    emulator[ENVIRONMENT].retire(5)
    fewer = await engine.sync("acme", "hr")
    assert fewer.status == "succeeded", fewer.error
    assert fewer.counts["deleted"] == 5

    emulator[ENVIRONMENT].retire(60)
    held = await engine.sync("acme", "hr")
    assert held.status == "stopped"
    assert held.counts["deletes_held"] == 60
    assert held.counts["deleted"] == 0


async def test_a_live_preview_reads_one_bounded_page_and_lets_go(
    services: Services, emulator: web.Application
) -> None:
    preview = await make_preview(
        services.store, services.box, services.ledger("acme"), tenant="acme",
        connector="hr", actor=ADMIN, limit=10, allow_private_sources=True, clock=services.clock,
    )  # fmt: skip
    assert preview.records_read == 10
    assert len(preview.people) == 10
    assert {"BSN", "IBAN", "Bruto salaris"} <= set(preview.dropped)
    reads = len(_log(emulator))
    assert reads <= 2, "a preview of ten people downloaded the whole export"
    run = await services.engine.sync("acme", "hr")
    assert run.status == "succeeded", run.error
    assert run.counts["fetched"] == 120
