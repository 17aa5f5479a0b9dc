"""The AFAS emulator behaves as AFAS Profit REST does, and the client copes with it.

The first part pins the emulator to the research notes (auth, paging defaults, unstable
order without a sort, filters, error bodies, the 2049-character limit, metainfo). The
second part checks what is AFAS-specific in `AfasConnector` and so not in the shared
contract suite: what it asks AFAS, keyset paging through deletes and inserts, the
local-time `Z`, and how it reads error bodies.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

from connectors.afas.client import AfasConnector, parse_afas_datetime
from connectors.afas.emulator import (
    AMSTERDAM,
    EMULATOR_TOKEN,
    ENVIRONMENT,
    FIELD_IDS,
    local_stamp,
    make_app,
    token_header,
)
from connectors.afas.synthetic import employee
from connectors.base import ConnectorConfig, ConnectorError, PageRequest, RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL, RateLimit
from connectors.registry import connector_type
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from mappings import bundled_mapping

ROWS = "/profitrestservices/connectors/Sluis_Medewerkers"
AUTH = {"Authorization": token_header()}
LOG_REFERENCE = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
async def afas(aiohttp_client: Any) -> Any:
    return await aiohttp_client(make_app(people=250, seed=7))


async def _rows(client: Any, **params: str) -> list[dict[str, Any]]:
    response = await client.get(ROWS, params=params, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    return body["rows"]  # type: ignore[no-any-return]


async def _afas_error(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    body: dict[str, Any] = await response.json()
    assert set(body) == {"externalMessage", "errorNumber", "profitLogReference"}
    assert isinstance(body["errorNumber"], int)
    assert LOG_REFERENCE.fullmatch(body["profitLogReference"])
    return body


# --------------------------------------------------------------------------- the emulator


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer " + EMULATOR_TOKEN,
        "AfasToken not-base64!",
        "AfasToken " + base64.b64encode(EMULATOR_TOKEN.encode()).decode(),
        token_header("0" * 64),
    ],
    ids=["missing", "bearer", "garbage", "data-without-xml", "wrong-token"],
)
async def test_a_bad_token_is_a_401_with_an_afas_body(afas: Any, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    await _afas_error(await afas.get(ROWS, headers=headers), 401)


async def test_skip_and_take_default_to_0_and_100(afas: Any) -> None:
    response = await afas.get(ROWS, params={"orderbyfieldids": "Medewerker"}, headers=AUTH)
    body = await response.json()
    assert (body["skip"], body["take"], len(body["rows"])) == (0, 100, 100)
    assert len(await _rows(afas, skip="200", take="100")) == 50
    assert len(await _rows(afas, skip="-1", take="-1")) == 250


async def test_page_cap_caps_take_and_says_so(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(people=50, page_cap=20))
    response = await client.get(ROWS, params={"take": "100"}, headers=AUTH)
    body = await response.json()
    assert (body["take"], len(body["rows"])) == (20, 20)


async def test_rows_are_shuffled_without_orderbyfieldids(afas: Any) -> None:
    first = [r["Medewerker"] for r in await _rows(afas, take="-1")]
    second = [r["Medewerker"] for r in await _rows(afas, take="-1")]
    assert first != second
    assert sorted(first) == sorted(second)


async def test_orderbyfieldids_sorts_stably_and_minus_descends(afas: Any) -> None:
    keys = [r["Medewerker"] for r in await _rows(afas, take="-1", orderbyfieldids="Medewerker")]
    assert keys == sorted(keys)
    desc = await _rows(afas, take="-1", orderbyfieldids="-Medewerker")
    assert [r["Medewerker"] for r in desc] == keys[::-1]
    by_two = await _rows(afas, take="-1", orderbyfieldids="Afdeling,-Medewerker")
    pairs = [(r["Afdeling"].casefold(), r["Medewerker"]) for r in by_two]
    assert pairs == sorted(pairs, key=lambda p: (p[0], -int(p[1])))


@pytest.mark.parametrize(
    ("field", "op", "value", "holds"),
    [
        ("Medewerker", "1", "100042", lambda v: v == "100042"),
        ("Uren_per_week", "2", "32", lambda v: v >= 32),
        ("Uren_per_week", "3", "24", lambda v: v <= 24),
        ("Verzuim_dagen", "4", "30", lambda v: v > 30),
        ("Salaris_bruto", "5", "3000", lambda v: v < 3000),
        ("Email_werk", "6", "ANNA", lambda v: "anna" in v),
        # AFAS documents its text operators with `%` wildcards (`6` with `%NL%`).
        ("Email_werk", "6", "%ANNA%", lambda v: v is not None and "anna" in v),
        ("Email_werk", "6", "%an%.nl", lambda v: v is not None and re.fullmatch(r".*an.*\.nl", v)),
        ("Email_werk", "10", "a%", lambda v: v is not None and v.startswith("a")),
        ("Email_werk", "10", "A", lambda v: v is not None and v.startswith("a")),
        ("Email_werk", "11", "%anna%", lambda v: v is not None and "anna" not in v),
        ("Afdeling", "12", "i%", lambda v: v is not None and not v.lower().startswith("i")),
        ("Email_werk", "13", "%.nl", lambda v: v is not None and v.endswith(".nl")),
        ("Medewerker", "14", "2", lambda v: v is not None and not v.endswith("2")),
        ("Afdeling", "7", "%t%", lambda v: v is not None and "t" not in v.lower()),
        ("Afdeling", "7", "it", lambda v: v != "IT"),
        ("Datum_uit_dienst", "8", "", lambda v: v is None),
        ("Datum_uit_dienst", "9", "", lambda v: v is not None),
        ("Gewijzigd_op", "2", "2026-10-01T00:00:00", lambda v: v >= "2026-10-01"),
        ("Datum_in_dienst", "5", "2005-01-01", lambda v: v < "2005-01-01"),
    ],
)
async def test_filter_operators(afas: Any, field: str, op: str, value: str, holds: Any) -> None:
    everyone = await _rows(afas, take="-1")
    rows = await _rows(afas, take="-1", filterfieldids=field, filtervalues=value, operatortypes=op)
    assert rows, "the filter matched nobody: pick a better example"
    expected = {r["Medewerker"] for r in everyone if holds(r[field])}
    assert {r["Medewerker"] for r in rows} == expected


async def test_comma_is_and_semicolon_is_or(afas: Any) -> None:
    both = await _rows(
        afas,
        take="-1",
        filterfieldids="Afdeling,Uren_per_week",
        filtervalues="IT,40",
        operatortypes="1,1",
    )
    assert both and all(r["Afdeling"] == "IT" and r["Uren_per_week"] == 40 for r in both)
    either = await _rows(
        afas,
        take="-1",
        filterfieldids="Afdeling;Afdeling",
        filtervalues="IT;HR",
        operatortypes="1;1",
    )
    assert {r["Afdeling"] for r in either} == {"IT", "HR"}


async def test_greater_than_on_the_key_agrees_with_the_sort(afas: Any) -> None:
    """Keyset paging needs `key > k` to be exactly what the sort puts after k."""
    people = afas.app[ENVIRONMENT].people
    for number in ("99", "abc", "ABD", "0999"):
        people.append({**people[0], "Medewerker": number})
    ordered = [r["Medewerker"] for r in await _rows(afas, take="-1", orderbyfieldids="Medewerker")]
    assert ordered[0] == "0999" and ordered[-3:] == ["99", "abc", "ABD"], "text, no case"
    for at in (0, 1, 57, len(ordered) - 4, len(ordered) - 3, len(ordered) - 2):
        after = await _rows(
            afas,
            take="-1",
            orderbyfieldids="Medewerker",
            filterfieldids="Medewerker",
            filtervalues=ordered[at],
            operatortypes="4",
        )
        assert [r["Medewerker"] for r in after] == ordered[at + 1 :]


@pytest.mark.parametrize(
    "params",
    [
        {"filterfieldids": "Bestaat_niet", "filtervalues": "x", "operatortypes": "1"},
        {"filterfieldids": "Afdeling", "filtervalues": "x", "operatortypes": "99"},
        {"filterfieldids": "Afdeling,Functie", "filtervalues": "x", "operatortypes": "1"},
        {"filterfieldids": "Afdeling", "filtervalues": "x"},
        {"filterfieldids": "Uren_per_week", "filtervalues": "veel", "operatortypes": "2"},
        {"orderbyfieldids": "Bestaat_niet"},
        {"take": "honderd"},
    ],
)
async def test_bad_queries_are_500_with_an_external_message(
    afas: Any, params: dict[str, str]
) -> None:
    body = await _afas_error(await afas.get(ROWS, params=params, headers=AUTH), 500)
    assert body["externalMessage"]


async def test_a_query_over_2049_characters_is_a_404(afas: Any) -> None:
    long = {"filterfieldids": "Afdeling", "operatortypes": "1", "filtervalues": "x" * 2049}
    assert (await afas.get(ROWS, params=long, headers=AUTH)).status == 404
    ok = {"filterfieldids": "Afdeling", "operatortypes": "1", "filtervalues": "x" * 1900}
    assert (await afas.get(ROWS, params=ok, headers=AUTH)).status == 200


async def test_unknown_and_blocked_connectors_are_afas_errors(afas: Any) -> None:
    unknown = "/profitrestservices/connectors/Profit_Bestaat_Niet"
    await _afas_error(await afas.get(unknown, headers=AUTH), 500)
    afas.app[ENVIRONMENT].blocked = True
    body = await _afas_error(await afas.get(ROWS, headers=AUTH), 500)
    assert "geblokkeerd" in body["externalMessage"]


async def test_paths_are_case_insensitive(afas: Any) -> None:
    response = await afas.get("/ProfitRestServices/connectors/Sluis_Medewerkers", headers=AUTH)
    assert response.status == 200


async def test_metainfo_lists_the_connector_and_its_fields(afas: Any) -> None:
    response = await afas.get("/profitrestservices/metainfo", headers=AUTH)
    listing = await response.json()
    assert [c["id"] for c in listing["getConnectors"]] == ["Sluis_Medewerkers"]
    response = await afas.get("/profitrestservices/metainfo/get/Sluis_Medewerkers", headers=AUTH)
    schema = await response.json()
    fields = {f["id"]: f for f in schema["fields"]}
    assert tuple(fields) == FIELD_IDS
    assert fields["Gewijzigd_op"]["dataType"] == "date"
    assert fields["Salaris_bruto"]["decimals"] == 2
    assert {"BSN", "IBAN"} <= set(fields), "the emulator must offer what must be dropped"
    missing = await afas.get("/profitrestservices/metainfo/get/Nope", headers=AUTH)
    await _afas_error(missing, 500)
    await _afas_error(await afas.get("/profitrestservices/metainfo"), 401)


async def test_too_many_is_an_afas_style_429(afas: Any) -> None:
    afas.app[CONTROL].rate_limit = RateLimit(requests=1, window=60.0)
    assert (await afas.get(ROWS, headers=AUTH)).status == 200
    response = await afas.get(ROWS, headers=AUTH)
    await _afas_error(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_changes_stamp_amsterdam_local_time_with_a_bogus_z(afas: Any) -> None:
    env = afas.app[ENVIRONMENT]
    fixed = datetime(2026, 7, 1, 10, 0, tzinfo=AMSTERDAM)
    env.clock = lambda: fixed
    touched = env.touch(2)
    retired = env.retire(1)
    broken = env.break_email(1)
    people = {p["Medewerker"]: p for p in env.people}
    for number in touched + retired + broken:
        assert people[number]["Gewijzigd_op"] == "2026-07-01T10:00:00Z"
    assert people[retired[0]]["Datum_uit_dienst"] == "2026-06-24"
    assert people[broken[0]]["Email_werk"] is None
    assert local_stamp(datetime(2026, 1, 1, 12, 0, tzinfo=AMSTERDAM)) == "2026-01-01T12:00:00Z"


# --------------------------------------------------------------------------- the client


KEY = b"test tenant key material, 32 b!!"


def _connector(
    base_url: str, session: aiohttp.ClientSession, token: str = EMULATOR_TOKEN, **settings: Any
) -> AfasConnector:
    config = ConnectorConfig(
        type="afas",
        base_url=f"{base_url}/profitrestservices",
        credentials={"token": token},
        settings=settings,
    )
    projector = Projector(load_mapping(bundled_mapping("afas")), KEY)
    policy = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.001)
    return AfasConnector(config, projector, session, retry=policy)


@pytest.fixture
async def served(aiohttp_server: Any) -> Any:
    app = make_app(people=120, seed=3)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        yield app, str(server.make_url("/")).rstrip("/"), session


def _queries(app: web.Application) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(r.query).items()} for r in app[CONTROL].log]


def test_the_registry_knows_afas() -> None:
    kind = connector_type("afas")
    assert kind.connector is AfasConnector
    assert kind.credential_keys == ("token",)


Between = Callable[[int], None]


async def _run(
    connector: AfasConnector,
    mode: SyncMode = SyncMode.FULL,
    *,
    since: str | None = None,
    between: Between | None = None,
) -> tuple[list[str], list[str | None]]:
    """One run to the last page: the subject ids in the order read, and every next cursor.

    `between(n)` runs after page n (1-based) and before the next page is fetched.
    """
    ids: list[str] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    while len(cursors) < 100:
        page = await connector.fetch_page(PageRequest(mode, cursor, since))
        ids.extend(s["subject_id"] for s in page.subjects)
        cursors.append(page.next_cursor)
        if page.last:
            return ids, cursors
        if between is not None:
            between(len(cursors))
        cursor = page.next_cursor
    raise AssertionError("the connector never reached a last page")


def _ids(connector: AfasConnector, numbers: list[str]) -> list[str]:
    return [connector.projector.subject_id(n) for n in numbers]


def _numbers(app: web.Application) -> list[str]:
    """Employee numbers in the order the emulator sorts them (as text, ignoring case)."""
    return sorted((p["Medewerker"] for p in app[ENVIRONMENT].people), key=str.casefold)


async def test_pages_seek_past_the_last_key_read_with_skip_0(served: Any) -> None:
    app, base, session = served
    numbers = _numbers(app)
    connector = _connector(base, session, page_size=50)
    ids, cursors = await _run(connector)
    assert ids == _ids(connector, numbers)
    assert cursors == [f"key:{numbers[49]}", f"key:{numbers[99]}", None]
    first, second, third = _queries(app)
    assert first == {"skip": "0", "take": "50", "orderbyfieldids": "Medewerker"}
    assert second == {
        "skip": "0",
        "take": "50",
        "orderbyfieldids": "Medewerker",
        "filterfieldids": "Medewerker",
        "filtervalues": numbers[49],
        "operatortypes": "4",
    }
    assert third == {**second, "filtervalues": numbers[99]}


def _person(number: str) -> dict[str, Any]:
    return {**employee(0, random.Random(number)), "Medewerker": number}


@pytest.mark.parametrize("change", ["delete", "insert"])
async def test_a_change_behind_the_cursor_mid_sync_skips_and_repeats_nobody(
    served: Any, change: str
) -> None:
    """Skip paging lost a person when an HR admin hard-deleted someone already read (and
    the engine then deleted that person) and read one twice after an insert."""
    app, base, session = served
    env = app[ENVIRONMENT]
    numbers = _numbers(app)
    connector = _connector(base, session, page_size=25)
    expected = list(numbers)

    def between(pages: int) -> None:
        if pages != 2:
            return
        if change == "delete":
            # someone read on page 1, and the very row the cursor points at
            gone = {numbers[3], numbers[49]}
            env.people[:] = [p for p in env.people if p["Medewerker"] not in gone]
        else:
            # "099999" sorts before everyone, behind the cursor: the next run reads it;
            # "99" sorts after "100119" as text, ahead of the cursor: this run reads it
            env.people[10:10] = [_person("099999"), _person("99")]
            expected.append("99")

    ids, cursors = await _run(connector, between=between)
    assert len(cursors) == 5
    assert len(ids) == len(set(ids)), "someone was read twice"
    assert ids == _ids(connector, expected), "someone was skipped"


async def test_incremental_pages_and_the_key_filter_in_one_filter(served: Any) -> None:
    app, base, session = served
    since, local = "2026-06-01T00:00:00Z", "2026-05-31T23:00:00"
    changed = [p["Medewerker"] for p in app[ENVIRONMENT].people if p["Gewijzigd_op"] >= local]
    numbers = [n for n in _numbers(app) if n in changed]
    assert 30 < len(numbers) < 120, "pick a `since` that spans pages but not everyone"
    connector = _connector(base, session, page_size=10)
    ids, cursors = await _run(connector, SyncMode.INCREMENTAL, since=since)
    assert ids == _ids(connector, numbers)
    assert cursors[0] == f"key:{numbers[9]}" and cursors[-1] is None
    first, second, *_ = _queries(app)
    assert first == {
        "skip": "0",
        "take": "10",
        "orderbyfieldids": "Medewerker",
        "filterfieldids": "Gewijzigd_op",
        "filtervalues": local,
        "operatortypes": "2",
    }
    assert second == {
        **first,
        "filterfieldids": "Gewijzigd_op,Medewerker",
        "filtervalues": f"{local},{numbers[9]}",
        "operatortypes": "2,4",
    }


async def test_a_skip_cursor_from_before_keyset_paging_is_read_once(served: Any) -> None:
    app, base, session = served
    numbers = _numbers(app)
    connector = _connector(base, session, page_size=50)
    page = await connector.fetch_page(PageRequest(SyncMode.FULL, cursor="50"))
    assert page.next_cursor == f"key:{numbers[99]}"
    assert [s["subject_id"] for s in page.subjects] == _ids(connector, numbers[50:100])
    assert _queries(app) == [{"skip": "50", "take": "50", "orderbyfieldids": "Medewerker"}]


@pytest.mark.parametrize(
    "cursor", ["key:", "key:a,b", "key:a;b", "key:" + "9" * 257, "page:3", "-5", "9" * 13, "٣"]
)
async def test_a_cursor_this_connector_did_not_write_is_refused(served: Any, cursor: str) -> None:
    app, base, session = served
    connector = _connector(base, session)
    with pytest.raises(ConnectorError) as caught:
        await connector.fetch_page(PageRequest(SyncMode.FULL, cursor=cursor))
    assert caught.value.kind == "config"
    assert app[CONTROL].log == []


async def test_a_key_field_that_is_not_unique_is_refused(served: Any) -> None:
    _, base, session = served
    connector = _connector(base, session, key_field="Afdeling", page_size=50)
    with pytest.raises(ConnectorError) as caught:
        await connector.fetch_page(PageRequest(SyncMode.FULL))
    assert caught.value.kind == "config"
    assert "key_field Afdeling" in str(caught.value)


async def test_a_full_page_ending_without_a_key_is_refused(served: Any) -> None:
    app, base, session = served
    for person in app[ENVIRONMENT].people[:2]:
        person["Medewerker"] = None  # no key sorts first, as NULL does
    connector = _connector(base, session, page_size=2)
    with pytest.raises(ConnectorError) as caught:
        await connector.fetch_page(PageRequest(SyncMode.FULL))
    assert caught.value.kind == "config"
    assert "no usable Medewerker" in str(caught.value)


async def test_a_server_that_ignores_the_key_filter_is_caught(aiohttp_server: Any) -> None:
    async def same_rows(request: web.Request) -> web.Response:
        rows = [_person("100001"), _person("100002")]
        return web.json_response({"skip": 0, "take": 2, "rows": rows})

    app = web.Application()
    app.router.add_get("/profitrestservices/connectors/{connector_id}", same_rows)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        connector = _connector(str(server.make_url("/")).rstrip("/"), session, page_size=2)
        first = await connector.fetch_page(PageRequest(SyncMode.FULL))
        assert first.next_cursor == "key:100002"
        with pytest.raises(ConnectorError) as caught:
            await connector.fetch_page(PageRequest(SyncMode.FULL, cursor=first.next_cursor))
    assert caught.value.kind == "config"


async def test_incremental_filters_from_the_watermark_minus_an_hour_in_local_time(
    served: Any,
) -> None:
    app, base, session = served
    connector = _connector(base, session)
    page = await connector.fetch_page(
        PageRequest(SyncMode.INCREMENTAL, since="2026-10-27T09:30:00Z")
    )
    query = _queries(app)[0]
    assert query["filterfieldids"] == "Gewijzigd_op"
    assert query["operatortypes"] == "2"
    assert query["filtervalues"] == "2026-10-27T08:30:00"
    stamps = [p["Gewijzigd_op"] for p in app[ENVIRONMENT].people]
    assert page.fetched == sum(1 for s in stamps if s >= "2026-10-27T08:30:00")
    assert page.watermark == max([*stamps, "2026-10-27T09:30:00Z"])


async def test_the_watermark_is_the_largest_seen_as_afas_spells_it(served: Any) -> None:
    app, base, session = served
    connector = _connector(base, session, page_size=40)
    cursor, marks = None, []
    while True:
        page = await connector.fetch_page(PageRequest(SyncMode.FULL, cursor=cursor))
        assert page.watermark is not None
        marks.append(page.watermark)
        if page.last:
            break
        cursor = page.next_cursor
    assert marks == sorted(marks)
    assert marks[-1] == max(p["Gewijzigd_op"] for p in app[ENVIRONMENT].people)


async def test_leavers_come_through_an_incremental_run_as_inactive(served: Any) -> None:
    app, base, session = served
    connector = _connector(base, session)
    since = max(p["Gewijzigd_op"] for p in app[ENVIRONMENT].people)
    retired = set(app[ENVIRONMENT].retire(3))
    page = await connector.fetch_page(PageRequest(SyncMode.INCREMENTAL, since=since))
    ids = {connector.projector.subject_id(n) for n in retired}
    assert {s["subject_id"] for s in page.subjects if not s["active"]} >= ids


async def test_a_capped_page_is_not_taken_for_the_last(aiohttp_server: Any) -> None:
    server = await aiohttp_server(make_app(people=95, page_cap=30), host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        connector = _connector(str(server.make_url("/")).rstrip("/"), session)
        pages, cursor = [], None
        while True:
            page = await connector.fetch_page(PageRequest(SyncMode.FULL, cursor=cursor))
            pages.append(page.fetched)
            if page.last:
                break
            cursor = page.next_cursor
    assert pages == [30, 30, 30, 5]


@pytest.mark.parametrize(
    ("since", "local"),
    [
        ("2026-11-22T14:05:00Z", datetime(2026, 11, 22, 14, 5)),
        ("2026-11-22T13:05:00+00:00", datetime(2026, 11, 22, 14, 5)),
        ("2026-07-01T08:00:00+00:00", datetime(2026, 7, 1, 10, 0)),
        ("2026-11-22", datetime(2026, 11, 22)),
        ("gisteren", None),
    ],
)
def test_afas_datetimes_are_local_time(since: str, local: datetime | None) -> None:
    assert parse_afas_datetime(since) == local


async def test_an_afas_500_is_a_config_error_with_only_the_safe_parts(served: Any) -> None:
    app, base, session = served
    connector = _connector(base, session, connector_id="Profit_Bestaat_Niet")
    with pytest.raises(ConnectorError) as caught:
        await connector.fetch_page(PageRequest(SyncMode.FULL))
    message = str(caught.value)
    assert caught.value.kind == "config"
    assert "errorNumber -2147180996" in message
    assert LOG_REFERENCE.search(message)
    assert "geautoriseerd" not in message, "externalMessage must not be passed on"
    assert len(app[CONTROL].log) == 1


async def test_a_refused_token_names_the_log_reference(served: Any) -> None:
    _, base, session = served
    connector = _connector(base, session, token="f" * 64)
    with pytest.raises(ConnectorError) as caught:
        await connector.fetch_page(PageRequest(SyncMode.FULL))
    assert caught.value.kind == "auth"
    assert "profitLogReference" in str(caught.value)
    assert "ongeldig" not in str(caught.value)


@pytest.mark.parametrize(
    "token",
    [EMULATOR_TOKEN, f"<token><version>1</version><data>{EMULATOR_TOKEN}</data></token>"],
    ids=["data-part", "xml"],
)
async def test_token_as_xml_or_data_part(served: Any, token: str) -> None:
    _, base, session = served
    page = await _connector(base, session, token=token).fetch_page(PageRequest(SyncMode.FULL))
    assert page.fetched == 100


@pytest.mark.parametrize(
    ("settings", "token", "kind"),
    [
        ({}, "", "auth"),
        ({}, "<token><data>x y</data></token>", "auth"),
        ({"page_size": 0}, EMULATOR_TOKEN, "config"),
        ({"page_size": 5000}, EMULATOR_TOKEN, "config"),
        ({"connector_id": "../metainfo"}, EMULATOR_TOKEN, "config"),
        ({"key_field": "Medewerker,BSN"}, EMULATOR_TOKEN, "config"),
    ],
)
def test_bad_settings_are_refused_up_front(settings: dict[str, Any], token: str, kind: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        _connector("http://127.0.0.1:9", None, token=token, **settings)  # type: ignore[arg-type]
    assert caught.value.kind == kind
