"""The egress schema's value rules: what may leave, and the errors that never quote values."""

from __future__ import annotations

import idna
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


def _a_label(label: str) -> str:
    try:
        return idna.encode(label).decode()
    except idna.IDNAError:
        return "xn--" + label.encode("punycode").decode()


_LOCAL_CHARS = st.sampled_from([*"abcxyz019.-_+'!#~éüßø", "ễ", "ı", "ł", " ", "@", "\x01", "ｕ"])
_DOMAIN_CHARS = st.sampled_from([*"abcz09-._", "ü", "é", "ß", "ı"])
#: Label shapes that trip a hand-written domain check: A-labels (valid ones and random
#: "xn--" tails that may not decode, or decode to code points IDNA forbids), full-width
#: letters and dots, ideographic full stops, a full-width at-sign, reserved hyphens.
_RANDOM_A_LABEL = st.builds(
    "xn--{}".format, st.text(st.sampled_from([*"abkvz019-"]), min_size=1, max_size=10)
)
_U_CHARS = st.sampled_from([*"abcü", "é", "ß", "ø", "ж"])
_VALID_A_LABEL = st.text(_U_CHARS, min_size=1, max_size=8).map(_a_label)
_FULL_WIDTH_CHARS = st.sampled_from([*"ｅｘａｍｐｌｅＮＬ", "．", "。", "｡", "－"])
_FULL_WIDTH = st.text(_FULL_WIDTH_CHARS, min_size=1, max_size=8)
_LABEL = st.one_of(
    st.text(_DOMAIN_CHARS, min_size=0, max_size=14),
    _RANDOM_A_LABEL,
    _VALID_A_LABEL,
    _FULL_WIDTH,
    st.sampled_from(["ab--cd", "a--b", "xn--", "-x", "x-"]),
)


@settings(max_examples=600)
@given(
    local=st.text(_LOCAL_CHARS, min_size=0, max_size=12),
    labels=st.lists(_LABEL, min_size=1, max_size=3),
    at=st.sampled_from(["@", "@", "@", "＠"]),
    tld=st.sampled_from(["nl", "com", "museum", "1", "n", "xn--p1ai", "xn--zz", "ｎｌ", "рф"]),
)
def test_every_email_we_accept_is_accepted_by_email_validator(
    local: str, labels: list[str], at: str, tld: str
) -> None:
    """Cross-check the hot-path check against the email-validator library: whatever we
    accept, it accepts, as the same address (we keep A-labels as A-labels; it shows
    U-labels, so domains are compared in their ASCII form)."""
    address = f"{local}{at}{'.'.join(labels)}.{tld}"
    try:
        ours = clean_email(address)
    except InvalidValue:
        return
    try:
        theirs = validate_email(ours, check_deliverability=False, test_environment=True)
        raw = validate_email(address.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:  # pragma: no cover - a disagreement is the failure
        pytest.fail(f"we accepted {ours!r}, email-validator says: {exc}")
    assert theirs.local_part.lower() == ours.rpartition("@")[0]
    assert theirs.ascii_domain == raw.ascii_domain.lower()


@pytest.mark.parametrize(
    "bad",
    [
        "user@xn--zz.nl",  # does not decode
        "user@xn--a.nl",  # decodes to a control character
        "user@xn--ls8h.la",  # decodes to an emoji, which IDNA 2008 forbids
        "user@xn--bcher-kva-.nl",  # trailing hyphen
        "user@sub.xn--zz",  # in the top-level label
        "user@ab--cd.nl",  # reserved hyphens outside an A-label
        "user＠example.nl",  # a full-width at-sign is not an at-sign
        "user@bü_cher.nl",
    ],
)
def test_invalid_idna_domains_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidValue, match="not a valid email address"):
        clean_email(bad)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("user@ｅｘａｍｐｌｅ.ｎｌ", "user@example.nl"),
        ("user@ＥＸＡＭＰＬＥ．ＮＬ", "user@example.nl"),
        ("user@example。nl", "user@example.nl"),
        ("user@bücher.nl", "user@bücher.nl"),
        ("user@xn--bcher-kva.nl", "user@xn--bcher-kva.nl"),
        ("user@XN--BCHER-KVA.NL", "user@xn--bcher-kva.nl"),
        ("ünal@ｂüｃｈｅｒ.nl", "ünal@bücher.nl"),
    ],
)
def test_full_width_domains_are_normalised(raw: str, clean: str) -> None:
    assert clean_email(raw) == clean
    assert validate_email(raw, check_deliverability=False, test_environment=True).ascii_domain == (
        idna.encode(clean.rpartition("@")[2]).decode()
    )


def test_subject_applies_the_same_rules() -> None:
    s = Subject(subject_id=SID, first_name=" Anna ", email="Anna@Example.NL")
    assert s.first_name == "Anna"
    assert s.email == "anna@example.nl"
    with pytest.raises(ValidationError):
        Subject(subject_id=SID, email="not-an-email")
    with pytest.raises(ValidationError):
        Subject(subject_id="not-a-keyed-id")
