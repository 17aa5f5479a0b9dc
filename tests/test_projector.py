"""The compiled projector: field rules, leavers, keyed ids, rejections, dropped names."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.synthetic import SENSITIVE_FIELDS, employees
from gateway.minimise.egress import SUBJECT_KEYS, Subject
from gateway.minimise.mapping import MappingError, load_mapping, parse_mapping
from gateway.minimise.projector import UNNAMED_FIELD, Projector, Rejected, safe_field_name

KEY = b"k" * 32
TODAY = date(2026, 11, 22)


@pytest.fixture
def afas(afas_mapping_path: Path) -> Projector:
    return Projector(load_mapping(afas_mapping_path), KEY, today=TODAY)


def _row(**overrides: Any) -> dict[str, Any]:
    row = next(employees(1, seed=3))
    row.update(overrides)
    return row


def test_afas_row_becomes_a_valid_subject(afas: Projector) -> None:
    out = afas.project(
        _row(
            Roepnaam="Bram",
            Voornaam="Abraham",
            Voorvoegsel="van den",
            Achternaam="Berg",
            Email_werk="Bram.vandenBerg@Example-Employer.nl",
            Functie="  Docent  ",
        )
    )
    assert isinstance(out, dict)
    assert tuple(out) == SUBJECT_KEYS
    assert out["first_name"] == "Bram"
    assert out["last_name"] == "van den Berg"
    assert out["email"] == "bram.vandenberg@example-employer.nl"
    assert out["job_title"] == "Docent"
    assert out["active"] is True
    assert Subject.model_validate(out).model_dump() == out


def test_first_non_empty_source_wins(afas: Projector) -> None:
    out = afas.project(_row(Roepnaam="  ", Voornaam="Johannes"))
    assert isinstance(out, dict) and out["first_name"] == "Johannes"
    out = afas.project(_row(Roepnaam=None, Voornaam=None))
    assert isinstance(out, dict) and out["first_name"] is None


def test_join_skips_empty_parts(afas: Projector) -> None:
    out = afas.project(_row(Voorvoegsel="", Achternaam="Jansen"))
    assert isinstance(out, dict) and out["last_name"] == "Jansen"


@pytest.mark.parametrize(
    ("left_on", "active"),
    [
        (None, True),
        ("", True),
        ("2026-11-23", True),
        ("2026-11-22", True),
        ("2026-11-21", False),
        ("2026-06-30T00:00:00Z", False),
        ("30-06-2026", False),
    ],
)
def test_leaver_rule(afas: Projector, left_on: str | None, active: bool) -> None:
    out = afas.project(_row(Datum_uit_dienst=left_on))
    assert isinstance(out, dict) and out["active"] is active


def test_a_leaver_needs_no_required_field_but_a_current_subject_does(afas: Projector) -> None:
    """A leaver is deleted downstream, none of its fields leave: one reported by its key
    alone (a deletion from a change feed) is a leaver, not a rejection."""
    gone = afas.project({"Medewerker": "100042", "Datum_uit_dienst": "2026-01-31"})
    assert isinstance(gone, dict)
    assert gone["active"] is False and gone["email"] is None
    here = afas.project({"Medewerker": "100042", "Datum_uit_dienst": None})
    assert isinstance(here, Rejected) and here.reason == "email is required but missing"
    later = afas.project({"Medewerker": "100042", "Datum_uit_dienst": "2027-01-31"})
    assert isinstance(later, Rejected) and later.reason == "email is required but missing"
    # A leaver date that cannot be read is no evidence of leaving: rejected, not guessed.
    bad_date = afas.project({"Medewerker": "100042", "Datum_uit_dienst": "binnenkort"})
    assert isinstance(bad_date, Rejected) and bad_date.reason.startswith("leaver field")


def test_unparseable_leaver_date_is_rejected_not_guessed(afas: Projector) -> None:
    out = afas.project(_row(Datum_uit_dienst="binnenkort"))
    assert isinstance(out, Rejected)
    assert (
        out.reason
        == "leaver field Datum_uit_dienst: is not a date (expected YYYY-MM-DD or DD-MM-YYYY)"
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"Medewerker": None}, "identity field Medewerker is missing"),
        ({"Medewerker": "  "}, "identity field Medewerker is empty"),
        ({"Medewerker": {"id": 1}}, "identity field Medewerker is an object, expected text"),
        ({"Email_werk": ""}, "email is required but missing"),
        ({"Email_werk": "geen-email"}, "email: not a valid email address"),
        ({"Functie": ["a", "b"]}, "job_title: source Functie is a list, expected text"),
        ({"Roepnaam": "Ann\x00a"}, "first_name: contains a control character"),
    ],
)
def test_rejections_name_fields_not_values(
    afas: Projector, overrides: dict[str, Any], reason: str
) -> None:
    out = afas.project(_row(**overrides))
    assert isinstance(out, Rejected)
    assert out.reason == reason


def test_numbers_become_text_but_booleans_do_not(afas: Projector) -> None:
    out = afas.project(_row(Medewerker=4711, Functie=1203))
    assert isinstance(out, dict) and out["job_title"] == "1203"
    assert out["subject_id"] == afas.subject_id("4711")
    assert isinstance(afas.project(_row(Functie=True)), Rejected)


def test_non_object_records_are_rejected(afas: Projector) -> None:
    for record in ([1, 2], "text", None, 3):
        assert isinstance(afas.project(record), Rejected)


def test_subject_ids_are_keyed(afas_mapping_path: Path) -> None:
    mapping = load_mapping(afas_mapping_path)
    row = _row(Medewerker="100042")
    a1 = Projector(mapping, KEY, today=TODAY).project(row)
    a2 = Projector(mapping, KEY, today=TODAY).project(dict(row))
    b = Projector(mapping, b"another tenant's key material!!!", today=TODAY).project(row)
    assert isinstance(a1, dict) and isinstance(a2, dict) and isinstance(b, dict)
    assert a1["subject_id"] == a2["subject_id"]
    assert a1["subject_id"] != b["subject_id"]
    for plain in (b"100042", b"afas.employee\x00100042"):
        for algo in ("sha256", "sha1", "md5"):
            assert hashlib.new(algo, plain).hexdigest()[:32] != a1["subject_id"]


def test_identity_namespace_separates_sources() -> None:
    text = (Path(__file__).resolve().parents[1] / "mappings" / "afas.toml").read_text()
    other = parse_mapping(text.replace('namespace = "afas.employee"', 'namespace = "crm.contact"'))
    a = Projector(parse_mapping(text), KEY).subject_id("100042")
    assert a != Projector(other, KEY).subject_id("100042")


def test_short_keys_are_refused(afas_mapping_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Projector(load_mapping(afas_mapping_path), b"short")


def test_page_counts_dropped_names_and_rejections(afas: Projector) -> None:
    rows = list(employees(50, seed=9))
    rows[10] = {**rows[10], "Email_werk": None}
    rows.insert(20, {"Medewerker": "1", "Email_werk": "a@example.nl", "Extra": 1})
    page = afas.project_page(rows)
    assert len(page.subjects) == 50
    assert page.rejected == [(10, "email is required but missing")]
    assert page.dropped["BSN"] == 50
    assert page.dropped["Extra"] == 1
    assert "Roepnaam" not in page.dropped
    assert "Datum_uit_dienst" not in page.dropped


def test_nothing_sensitive_survives_a_realistic_export(afas: Projector) -> None:
    rows = list(employees(500, seed=5))
    secrets = {str(r[k]) for r in rows for k in SENSITIVE_FIELDS if r.get(k)}
    page = afas.project_page(rows)
    blob = repr(page.subjects)
    assert not [s for s in secrets if s in blob]


NESTED = """\
connector = "hubspot"
[identity]
fields = ["id"]
[fields.email]
source = "properties.email"
category = "user.contact.email"
[fields.first_name]
source = ["properties.firstname"]
category = "user.name.first"
[[leaver]]
field = "archived"
when = "true"
"""


def test_nested_sources_and_dropped_paths() -> None:
    p = Projector(parse_mapping(NESTED), KEY)
    record = {
        "id": "51",
        "archived": False,
        "properties": {
            "email": "A@Example.com",
            "firstname": "Ann",
            "phone": "0612345678",
            "address": {"street": "Dorpsstraat 1"},
        },
        "createdAt": "2026-01-01",
    }
    out = p.project(record)
    assert isinstance(out, dict)
    assert out["email"] == "a@example.com" and out["first_name"] == "Ann"
    assert out["last_name"] is None and out["job_title"] is None
    assert sorted(p.dropped_names(record)) == [
        "createdAt",
        "properties.address",
        "properties.phone",
    ]
    assert isinstance(p.project({**record, "archived": "true"}), dict)
    assert p.project({**record, "archived": True})["active"] is False  # type: ignore[index]
    assert isinstance(p.project({**record, "archived": "misschien"}), Rejected)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("BSN", "BSN"),
        ("jan@example.nl", UNNAMED_FIELD),
        ("123456782", UNNAMED_FIELD),
        ("x" * 65, UNNAMED_FIELD),
        ("bad\nname", UNNAMED_FIELD),
        ("", UNNAMED_FIELD),
    ],
)
def test_safe_field_name(name: str, shown: str) -> None:
    assert safe_field_name(name) == shown


@pytest.mark.parametrize("key", [KEY, b"a much longer key than one sha256 block holds, " * 3])
def test_subject_id_is_hmac_sha256_over_namespace_and_identity(
    afas_mapping_path: Path, key: bytes
) -> None:
    """The hot path hashes the HMAC pads once; the ids must stay exactly RFC 2104's."""
    projector = Projector(load_mapping(afas_mapping_path), key, today=TODAY)
    out = projector.project(_row(Medewerker=" 100042 "))
    expected = hmac.new(key, b"afas.employee\x00100042", "sha256").digest()[:16].hex()
    assert isinstance(out, dict) and out["subject_id"] == expected
    assert projector.subject_id("100042") == expected


def test_cached_verdicts_are_given_every_time(afas: Projector) -> None:
    """Values are checked once per distinct value; a refusal still refuses every record."""
    bad = "Teamleider (bel 06-12345678)"
    for _ in range(3):
        out = afas.project(_row(Functie=bad))
        assert isinstance(out, Rejected) and out.reason.startswith("job_title: holds")
        good = afas.project(_row(Functie="  Teamleider  "))
        assert isinstance(good, dict) and good["job_title"] == "Teamleider"
    for _ in range(2):
        assert isinstance(afas.project(_row(Datum_uit_dienst="gisteren")), Rejected)
        assert afas.project(_row(Datum_uit_dienst="2020-01-01"))["active"] is False  # type: ignore[index]


def test_mapped_fields_missing_from_every_record_are_reported(afas_mapping_path: Path) -> None:
    text = afas_mapping_path.read_text().replace('source = "Functie"', 'source = "Functe"')
    projector = Projector(parse_mapping(text), KEY, today=TODAY)
    projector.project_page(employees(20, seed=1))
    assert projector.records_seen == 20
    assert projector.unseen_source_fields == ["Functe"]


def test_nested_fields_count_as_seen_when_present() -> None:
    mapping = parse_mapping(
        'connector = "crm"\n[identity]\nfields = ["id"]\n'
        '[fields.email]\nsource = "properties.email"\ncategory = "user.contact.email"\n'
        '[fields.first_name]\nsource = "properties.firstnam"\ncategory = "user.name.first"\n'
    )
    projector = Projector(mapping, KEY)
    projector.project_page([{"id": "1", "properties": {"email": None, "firstname": "A"}}])
    assert projector.unseen_source_fields == ["properties.firstnam"]


def test_csv_columns_with_spaces_and_dots_are_read_as_named() -> None:
    """Exports name columns as people write them ("Job Title", "Func.omschr"): a mapping
    may name them so, and a flat record's own dotted column wins over a nested path."""
    text = """
connector = "sftp"
[identity]
fields = ["Personeels nummer"]
[fields.first_name]
source = "First Name"
category = "user.name.first"
[fields.last_name]
source = "Last Name"
category = "user.name.last"
[fields.email]
source = "E-mail adres"
category = "user.contact.email"
required = true
[fields.job_title]
source = "Func.omschr"
category = "user.job_title"
"""
    projector = Projector(parse_mapping(text, "export.toml"), b"k" * 32)
    row = {
        "Personeels nummer": "17", "First Name": "Eva", "Last Name": "Dijk",
        "E-mail adres": "eva@example.nl", "Func.omschr": "Docent", "BSN": "123456782",
    }  # fmt: skip
    page = projector.project_page([row])
    [subject] = page.subjects
    assert (subject["first_name"], subject["job_title"]) == ("Eva", "Docent")
    assert dict(page.dropped) == {"BSN": 1}
    with pytest.raises(MappingError):
        parse_mapping(text.replace('"Func.omschr"', '" Func"'), "export.toml")
