"""Property tests: whatever a source sends, only the egress fields can come out."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.minimise.egress import SUBJECT_KEYS, Subject
from gateway.minimise.mapping import load_mapping, parse_mapping
from gateway.minimise.projector import Projector, Rejected

REPO = Path(__file__).resolve().parents[1]
AFAS = Projector(load_mapping(REPO / "mappings" / "afas.toml"), b"p" * 32, today=date(2026, 11, 22))
NESTED = Projector(
    parse_mapping(
        'connector = "crm"\n[identity]\nfields = ["id"]\n'
        '[fields.email]\nsource = "properties.email"\ncategory = "user.contact.email"\n'
        '[fields.job_title]\nsource = ["properties.title", "title"]\ncategory = "user.job_title"\n'
    ),
    b"q" * 32,
)
MARK = "SECRETVALUE"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.text(min_size=0, max_size=5000),
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
marked_text = st.text(max_size=40).map(lambda s: f"{s}{MARK}{s}")
marked = st.recursive(
    marked_text | st.integers(min_value=10**12).map(lambda n: f"{MARK}{n}"),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
mapped_value = st.one_of(
    anything,
    st.emails(),
    st.sampled_from(["", "  ", "Anna", "van den", "2020-01-01", "2999-01-01"]),
)


def _record(mapped: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    record = dict(extra)
    record.update(mapped)
    return record


afas_mapped = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(sorted(AFAS.mapping.source_fields), mapped_value),
)
extra_keys = st.dictionaries(
    st.text(min_size=1, max_size=20).filter(
        lambda k: k not in AFAS.mapping.source_fields and MARK not in k
    ),
    marked,
    max_size=8,
)


def _check(projector: Projector, record: dict[str, Any]) -> None:
    out = projector.project(record)
    if isinstance(out, Rejected):
        assert MARK not in out.reason
        return
    assert set(out) <= set(SUBJECT_KEYS)
    assert MARK not in orjson.dumps(out).decode()
    Subject.model_validate(out)
    page = projector.project_page([record])
    assert MARK not in repr(page.subjects)
    assert all(MARK not in name for name in page.dropped)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mapped=afas_mapped, extra=extra_keys)
def test_afas_output_is_a_subset_and_unmapped_values_never_appear(
    mapped: dict[str, Any], extra: dict[str, Any]
) -> None:
    _check(AFAS, _record(mapped, extra))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    ident=mapped_value,
    email=mapped_value,
    title=mapped_value,
    siblings=st.dictionaries(st.sampled_from(["phone", "address", "notes", "dob"]), marked),
    extra=st.dictionaries(st.sampled_from(["createdAt", "lifecycle", "x"]), marked),
)
def test_nested_sources_never_leak_their_siblings(
    ident: Any, email: Any, title: Any, siblings: dict[str, Any], extra: dict[str, Any]
) -> None:
    record = {**extra, "id": ident, "properties": {**siblings, "email": email, "title": title}}
    _check(NESTED, record)


@settings(max_examples=100, deadline=None)
@given(anything)
def test_any_json_value_is_handled(value: Any) -> None:
    out = AFAS.project(value)
    assert isinstance(out, Rejected | dict)
