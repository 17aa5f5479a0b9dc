"""The inbound SCIM endpoint against what a hostile or broken identity provider sends:
bodies of any JSON shape, PATCH operations of any shape, filters and paging of any text.
Every answer is a SCIM error or a success, never a 5xx or a traceback, and nothing it was
sent ends up in the gateway's log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Api
from tests.api.scim_helpers import PATCH, USER, scim_source

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=20,
)  # fmt: skip
user_like = st.fixed_dictionaries(
    {"schemas": st.just([USER]), "userName": st.text(max_size=60)},
    optional={
        "name": st.dictionaries(st.sampled_from(["givenName", "familyName", "formatted"]),
                                json_values, max_size=3),
        "emails": st.lists(st.dictionaries(st.sampled_from(["value", "primary", "type"]),
                                           json_values, max_size=3), max_size=3),
        "active": json_values,
        "title": json_values,
        "externalId": json_values,
        "phoneNumbers": json_values,
    },
)  # fmt: skip
patch_ops = st.lists(
    st.fixed_dictionaries(
        {"op": st.sampled_from(["add", "replace", "remove", "Replace", "Add", "move", ""])},
        optional={
            "path": st.sampled_from(["name.givenName", "emails", 'emails[type eq "work"].value',
                                     "active", "title", "userName", "[", "a.b.c.d", ""])
            | st.text(max_size=30),
            "value": json_values,
        },
    ),
    max_size=4,
)  # fmt: skip
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fine(status: int) -> bool:
    return status < 500


def _drawn(strategy: st.SearchStrategy[Any]) -> list[Any]:
    """`max_examples` inputs as Hypothesis draws them."""
    found: list[Any] = []

    @SETTINGS
    @given(strategy)
    def draw(value: Any) -> None:
        found.append(value)

    draw()
    return found


async def test_any_body_any_patch_any_query_is_answered_without_a_server_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    scim = await scim_source(api)
    status, made = await scim.call(
        "POST", "/Users",
        {"schemas": [USER], "userName": "base@example.nl",
         "emails": [{"value": "base@example.nl", "primary": True}],
         "name": {"givenName": "Base", "familyName": "User"}},
    )  # fmt: skip
    assert status == 201
    uid = made["id"]

    # Hypothesis draws the inputs (it cannot drive coroutines itself); each is then sent
    # over HTTP in turn. No shrinking, but the failing input is in the assertion.
    bodies = _drawn(json_values | user_like)
    users = _drawn(user_like)
    patches = _drawn(st.tuples(patch_ops, st.sampled_from([[PATCH], [], ["x"]])))
    queries = _drawn(st.tuples(st.text(max_size=60), st.text(max_size=6), st.text(max_size=6)))
    sent: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for body in bodies:
            status, _ = await scim.call("POST", "/Users", body)
            assert _fine(status), body
        for body in users:
            status, _ = await scim.call("PUT", f"/Users/{uid}", body)
            assert _fine(status), body
        for ops, schemas in patches:
            body = {"schemas": schemas, "Operations": ops}
            status, _ = await scim.call("PATCH", f"/Users/{uid}", body)
            assert _fine(status), body
        for filter_text, start, count in queries:
            params = {"filter": filter_text, "startIndex": start, "count": count}
            status, _ = await scim.call("GET", "/Users", params=params)
            assert _fine(status), params
            sent.append(filter_text)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in sent:
        if len(text) >= 8:
            assert text not in logged
