"""The egress schema's value rules: what may leave, and the errors that never quote values."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.minimise.egress import (
    EGRESS_FIELDS,
    MAX_TEXT_LENGTH,
    SUBJECT_KEYS,
    InvalidValue,
    Subject,
    clean_email,
    clean_text,
)

SID = "0123456789abcdef0123456789abcdef"


def test_schema_is_exactly_the_four_fields_and_nothing_else() -> None:
    assert EGRESS_FIELDS == ("first_name", "last_name", "email", "job_title")
    assert set(Subject.model_fields) == set(SUBJECT_KEYS)


def test_subject_forbids_extra_fields() -> None:
    with pytest.raises(ValidationError):
        Subject.model_validate({"subject_id": SID, "bsn": "123456782"})


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Anna ", "Anna"),
        ("van den Berg", "van den Berg"),
        ("Zoë", "Zoë"),
        ("x" * 500, "x" * MAX_TEXT_LENGTH),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    "bad", ["An\x00na", "tab\there", "line\nbreak", "bell\x07", "\u202egnp.exe"]
)
def test_control_characters_are_rejected_without_quoting(bad: str) -> None:
    with pytest.raises(InvalidValue) as info:
        clean_text(bad, "first_name")
    assert str(info.value) == "first_name: contains a control character"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Anna.de.Vries@Example-Employer.NL", "anna.de.vries@example-employer.nl"),
        ("  x+tag@sub.example.nl ", "x+tag@sub.example.nl"),
        ("zoë.nguyễn.1@example-employer.nl", "zoë.nguyễn.1@example-employer.nl"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("a@xn--bcher-kva.example", "a@xn--bcher-kva.example"),
    ],
)
def test_clean_email_accepts_and_lowercases(raw: str, clean: str) -> None:
    assert clean_email(raw) == clean


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain",
        "a@b",
        "@example.nl",
        "a@@example.nl",
        "a..b@example.nl",
        ".a@example.nl",
        "a.@example.nl",
        "a b@example.nl",
        '"quoted"@example.nl',
        "a@[127.0.0.1]",
        "a@-example.nl",
        "a@example-.nl",
        "a@exa_mple.nl",
        "a@example.123",
        "a@example.nl\x00",
        "Anna <anna@example.nl>",
        "x" * 65 + "@example.nl",
        "a@" + "b" * 250 + ".nl",
    ],
)
def test_clean_email_rejects(bad: str) -> None:
    with pytest.raises(InvalidValue) as info:
        clean_email(bad)
    assert info.value.field == "email"
    assert bad.strip() == "" or bad not in str(info.value)


_LOCAL_CHARS = st.sampled_from([*"abcxyz019.-_+'!#~éüßø", "ễ", "ı", "ł", " ", "@", "\x01"])
_DOMAIN_CHARS = st.sampled_from([*"abcz09-._", "ü", "é"])


@settings(max_examples=400)
@given(
    local=st.text(_LOCAL_CHARS, min_size=0, max_size=12),
    domain=st.text(_DOMAIN_CHARS, min_size=0, max_size=14),
    tld=st.sampled_from(["nl", "com", "museum", "1", "n", "xn--p1ai"]),
)
def test_every_email_we_accept_is_accepted_by_email_validator(
    local: str, domain: str, tld: str
) -> None:
    """Cross-check the hot-path syntax check against the email-validator library."""
    address = f"{local}@{domain}.{tld}"
    try:
        ours = clean_email(address)
    except InvalidValue:
        return
    try:
        theirs = validate_email(ours, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:  # pragma: no cover - a disagreement is the failure
        pytest.fail(f"we accepted {ours!r}, email-validator says: {exc}")
    assert theirs.local_part.lower() == ours.rpartition("@")[0]


def test_subject_applies_the_same_rules() -> None:
    s = Subject(subject_id=SID, first_name=" Anna ", email="Anna@Example.NL")
    assert s.first_name == "Anna"
    assert s.email == "anna@example.nl"
    with pytest.raises(ValidationError):
        Subject(subject_id=SID, email="not-an-email")
    with pytest.raises(ValidationError):
        Subject(subject_id="not-a-keyed-id")
