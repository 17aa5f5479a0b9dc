"""The egress schema: the only shape of personal data that may leave Sluis.

A `Subject` holds a keyed pseudonymous id, first name, last name, email, job title and an
`active` flag. Nothing else can be expressed: mappings fill a subset of these fields and the
model forbids extra keys.

The fields are declared once, in `EgressData` (the personal data that may leave) and
`SubjectRecord` (the plain dict the projector emits per record on the hot path, which is
`EgressData` plus the id and the flag). Everything else is derived from them: the field
tuples below, the API's `EventData` schema, and the checks that `Subject` matches.

The value rules live in plain functions (`clean_text`, `clean_email`) so that the mapping
engine's hot path can apply exactly the same checks without building a pydantic model per
record; `Subject` wraps them for API boundaries.

Error messages name the field and the rule that failed, never the value: they end up in
quarantine reports and logs, where personal data must not go.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Annotated, Final

import idna
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic reads TypedDicts from here before 3.12

from gateway.minimise import guard


@with_config(ConfigDict(extra="forbid"))
class EgressData(TypedDict):
    """The personal data of one subject as it may leave: every egress field, in output
    order, None where the mapping fills nothing (a feed event's `data`)."""

    first_name: str | None
    last_name: str | None
    email: str | None
    job_title: str | None


class SubjectRecord(EgressData):
    """One minimised record as the projector emits it: a plain dict, no model per record
    (`Subject` is the validating model for API boundaries)."""

    #: Keyed pseudonymous id: 32 lower-case hex digits.
    subject_id: str
    #: False for a leaver: the subject is to be deleted downstream.
    active: bool


#: The personal-data fields a Subject may carry, in output order.
EGRESS_FIELDS: Final[tuple[str, ...]] = tuple(EgressData.__annotations__)
#: Every key a serialised Subject has, in output order.
SUBJECT_KEYS: Final = ("subject_id", *EGRESS_FIELDS, "active")
if set(SUBJECT_KEYS) != set(SubjectRecord.__annotations__):  # pragma: no cover
    raise RuntimeError("SubjectRecord changed: SUBJECT_KEYS must name its keys")


def egress_data(subject: SubjectRecord) -> EgressData:
    """The egress fields of a subject, without its id and flag."""
    return {
        "first_name": subject["first_name"],
        "last_name": subject["last_name"],
        "email": subject["email"],
        "job_title": subject["job_title"],
    }


#: Data categories (fideslang vocabulary) each egress field may be tagged with.
FIELD_CATEGORIES: Final[dict[str, frozenset[str]]] = {
    "first_name": frozenset({"user.name", "user.name.first"}),
    "last_name": frozenset({"user.name", "user.name.last"}),
    "email": frozenset({"user.contact.email"}),
    "job_title": frozenset({"user.job_title"}),
}
#: Every category the egress schema knows.
KNOWN_CATEGORIES: Final = frozenset().union(*FIELD_CATEGORIES.values())

MAX_TEXT_LENGTH: Final = 200
MAX_EMAIL_LENGTH: Final = 254
MAX_EMAIL_LOCAL_LENGTH: Final = 64

# C0 and C1 controls, DEL, line/paragraph separators and bidi overrides: none of them has a
# place in a name or a title, and several are used for log or display injection.
FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# Dot-atom local part (RFC 5322) with UTF-8 letters allowed (RFC 6531); a domain of at least
# two labels, letters/digits/hyphens (no underscore, checked apart: it keeps the pattern
# fast), no leading or trailing hyphen, a non-numeric TLD. The two parts are matched apart
# so that the domain's verdict can be cached.
# Quoted local parts and IP literals are refused: no HR or CRM system issues those as
# work addresses, and they are a favourite of injection payloads.
_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]"
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD = r"(?:[^\W\d_]{2,63}|xn--[\w-]{1,59})"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*").fullmatch
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+{_TLD}").fullmatch


MAX_FIELD_NAME_LENGTH: Final = 64


def is_reportable_field_name(name: str) -> bool:
    """May this source field *name* appear in summaries and the ledger?

    Field names are schema, not data, but an export without a header row turns values into
    names. Anything that looks like a value (an @, only digits, control characters, very
    long) is not reported by its text.
    """
    return not (
        not name
        or len(name) > MAX_FIELD_NAME_LENGTH
        or "@" in name
        or name.replace(" ", "").isdigit()
        or not name.isprintable()
    )


class InvalidValue(ValueError):
    """A value broke an egress rule. The message names the rule, never the value."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


def clean_text(value: str, field: str = "value") -> str:
    """Trim, reject control characters and sensitive data (minimise.guard), cap the length."""
    value = value.strip()
    if FORBIDDEN_CHARS.search(value):
        raise InvalidValue(field, "contains a control character")
    if len(value) > MAX_TEXT_LENGTH:
        value = value[:MAX_TEXT_LENGTH].rstrip()
    why = guard.refusal(value)
    if why is not None:
        raise InvalidValue(field, why)
    return value


def clean_email(value: str, field: str = "email") -> str:
    """Trim, normalise and check the syntax of a work email address.

    The local part is NFC-normalised and lower-cased. The domain is NFKC-normalised (so
    full-width letters and dots become `example.nl`, as email-validator and browsers do),
    its ideographic full stops become dots, and it is lower-cased; then every label
    must be valid IDNA: an `xn--` A-label must decode to a valid U-label, and a non-ASCII
    U-label must be one. A full-width at-sign is not an at-sign (email-validator refuses it
    too). The domain check is cached per distinct domain: an export has few of them.
    """
    value = value.strip()
    if not value.isascii():
        local, at, domain = value.rpartition("@")
        if at:
            value = unicodedata.normalize("NFC", local) + at + _unicode_domain(domain)
        else:
            value = unicodedata.normalize("NFC", value)
    value = value.lower()
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidValue(field, f"longer than {MAX_EMAIL_LENGTH} characters")
    local, at, domain = value.rpartition("@")
    ok = _DOMAIN_VERDICTS.get(domain) if at else False
    if ok is None:
        ok = _domain_ok(domain)
        if len(_DOMAIN_VERDICTS) >= MAX_CACHED_DOMAINS:
            _DOMAIN_VERDICTS.clear()
        _DOMAIN_VERDICTS[domain] = ok
    if not ok or _LOCAL(local) is None:
        if FORBIDDEN_CHARS.search(value):
            raise InvalidValue(field, "contains a control character")
        raise InvalidValue(field, "not a valid email address")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise InvalidValue(field, f"local part longer than {MAX_EMAIL_LOCAL_LENGTH} characters")
    return value


#: Label separators UTS-46 maps to a full stop; NFKC already maps the full-width one.
_DOTS: Final = str.maketrans({"\u3002": ".", "\uff61": "."})


@functools.lru_cache(maxsize=4096)
def _unicode_domain(domain: str) -> str:
    if domain.isascii():
        return domain
    return unicodedata.normalize("NFKC", domain).translate(_DOTS)


#: Domain → verdict of `_domain_ok`. An export has few distinct domains; a plain dict is
#: the cheapest lookup on the hot path (cleared when full, so it stays bounded).
_DOMAIN_VERDICTS: dict[str, bool] = {}
MAX_CACHED_DOMAINS: Final = 4096


def _domain_ok(domain: str) -> bool:
    """Syntax, underscores, reserved hyphens and IDNA validity of a lower-cased domain."""
    if "_" in domain or _DOMAIN(domain) is None:
        return False
    if domain.isascii() and "--" not in domain:
        return True
    try:
        idna.encode(domain)
    except (idna.IDNAError, UnicodeError):
        # Reserved "--" in the third and fourth place (RFC 5891 4.2.3.1), an A-label that
        # does not decode, or decodes to something IDNA forbids; a disallowed code point.
        return False
    return True


def _text(value: str) -> str:
    return clean_text(value, "text")


def _email(value: str) -> str:
    return clean_email(value)


Text = Annotated[str, AfterValidator(_text)]
Email = Annotated[str, AfterValidator(_email)]


class Subject(BaseModel):
    """One minimised person record: the whole of what may leave the gateway about them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    subject_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="keyed pseudonymous id")
    first_name: Text | None = None
    last_name: Text | None = None
    email: Email | None = None
    job_title: Text | None = None
    active: bool = True


if Subject.model_fields.keys() != set(SUBJECT_KEYS):  # pragma: no cover
    raise RuntimeError("Subject and SubjectRecord disagree: update both, or neither")
