"""The OpenAPI document says what the validators enforce: stable operation ids, the cursor
format, credential keys and bundled mapping per connector type, `valid_until` in the
future; and /metrics' optional token."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from connectors.registry import connector_type, known_types
from gateway.api.openapi import document
from gateway.api.schema_rules import CURSOR_PATTERN, future_pattern
from gateway.delivery.feed import BadCursor, CursorMismatch, decode_cursor, encode_cursor
from tests.api.conftest import CONNECTOR, Api, make_connector, make_tenant

CURSOR = re.compile(CURSOR_PATTERN)
#: Published ids are a contract with generated clients: changing one is a breaking change.
OPERATION_IDS = {
    ("/healthz", "get"): "getHealth",
    ("/readyz", "get"): "getReadiness",
    ("/metrics", "get"): "getMetrics",
    ("/openapi.json", "get"): "getOpenApi",
    ("/admin/v1/tenants", "post"): "createTenant",
    ("/admin/v1/tenants/{tenant}", "get"): "getTenant",
    ("/admin/v1/tenants/{tenant}/connectors", "post"): "createConnector",
    ("/admin/v1/tenants/{tenant}/connectors", "get"): "listConnectors",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}", "get"): "getConnector",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}/instructions", "post"): "grantInstruction",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}/instructions", "get"): "listInstructions",
    (
        "/admin/v1/tenants/{tenant}/connectors/{connector}/instructions/{instruction}",
        "delete",
    ): "revokeInstruction",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}/syncs", "post"): "startSync",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}/syncs", "get"): "listSyncs",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}/syncs/{run}", "get"): "getSync",
    ("/admin/v1/tenants/{tenant}/ledger", "get"): "listLedgerEntries",
    ("/admin/v1/tenants/{tenant}/ledger/proof/{index}", "get"): "getInclusionProof",
    ("/admin/v1/tenants/{tenant}/consumers", "post"): "createConsumer",
    ("/feed/v1/tenants/{tenant}/events", "get"): "listFeedEvents",
    ("/admin/v1/tenants/{tenant}/connectors/{connector}/preview", "post"): "createPreview",
    (
        "/admin/v1/tenants/{tenant}/connectors/{connector}/previews/{preview}",
        "get",
    ): "getPreview",
}


def test_every_operation_has_a_stable_unique_operation_id() -> None:
    ids = {(path, method): op.get("operationId")
           for path, ops in document()["paths"].items() for method, op in ops.items()}  # fmt: skip
    assert None not in ids.values()
    assert len(set(ids.values())) == len(ids)
    for key, expected in OPERATION_IDS.items():
        assert ids.get(key) == expected, key


@given(st.integers(min_value=0, max_value=10**18 - 1), st.sampled_from(["acme", "t-2", "x"]))
def test_every_cursor_the_feed_hands_out_matches_the_pattern(seq: int, tenant: str) -> None:
    assert CURSOR.match(encode_cursor(seq, tenant))


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_string_the_pattern_admits_is_a_cursor(text: str) -> None:
    """Anything the schema admits is read as a cursor: of this tenant's feed, or refused as
    another tenant's (a 409 that says so), never as malformed (a 400)."""
    try:
        seq = decode_cursor(text, "acme")
    except CursorMismatch:
        assert text.startswith("v2.")
        return
    if text.startswith("v2."):
        assert encode_cursor(seq, "acme") == text
    else:  # the first gateways' base64url(`v1:<seq>`), still read
        assert base64.urlsafe_b64encode(f"v1:{seq}".encode()).rstrip(b"=").decode() == text


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."))
def test_the_pattern_and_the_decoder_agree(text: str) -> None:
    try:
        decode_cursor(text, "acme")
    except CursorMismatch:
        assert CURSOR.match(text)
    except BadCursor:
        assert not CURSOR.match(text)
    else:
        assert CURSOR.match(text)


@given(st.from_regex(future_pattern(datetime.now(UTC).date()), fullmatch=True))
def test_every_valid_until_the_pattern_admits_is_in_the_future(text: str) -> None:
    assert datetime.fromisoformat(text) > datetime.now(UTC)


def test_the_valid_until_pattern_admits_every_utc_day_from_tomorrow() -> None:
    today = date(2026, 11, 30)
    pattern = re.compile(future_pattern(today))
    for offset in range(-3, 800):
        day = today + timedelta(days=offset)
        admitted = pattern.match(f"{day.isoformat()}T08:30:00Z") is not None
        leap_day_later = (day.month, day.day) == (2, 29) and day.year > today.year
        assert admitted == (offset >= 1 and not leap_day_later), day


def test_connector_rules_name_each_types_credentials_and_mapping() -> None:
    schema = document()["components"]["schemas"]["ConnectorCreate"]
    rules = {r["if"]["properties"]["type"]["const"]: r["then"] for r in schema["allOf"]}
    assert set(rules) == set(known_types())
    for name, then in rules.items():
        assert then["properties"]["credentials"]["required"] == list(
            connector_type(name).credential_keys
        )
        assert {"const": name} in then["properties"]["mapping"]["anyOf"]


async def test_the_validators_refuse_what_the_rules_refuse(api: Api) -> None:
    await make_tenant(api)
    reply = await api.post(
        "/admin/v1/tenants/acme/connectors", {**CONNECTOR, "credentials": {"other": "x"}}
    )
    assert reply.status == 422
    await make_connector(api)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    reply = await api.post(
        "/admin/v1/tenants/acme/connectors/hr/instructions",
        {"purpose": "p", "valid_until": past},
    )
    assert reply.status == 422


async def test_a_ledger_cursor_beyond_64_bits_is_a_422_not_a_500(api: Api) -> None:
    await make_tenant(api)
    reply = await api.get("/admin/v1/tenants/acme/ledger?after=1217994742178328111742976")
    assert reply.status == 422
