"""The second safety net: BSNs, IBANs, phone numbers and emails in names and titles."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from connectors.afas.synthetic import employees
from gateway.minimise.egress import InvalidValue, clean_text
from gateway.minimise.guard import refusal, sensitive_kinds
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector, Rejected

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("111222333", "BSN"), ("Teamleider 111 222 333", "BSN"), ("1112.22.333", "BSN"),
        ("Payroll NL91ABNA0417164300", "IBAN"), ("NL91 ABNA 0417 1643 00", "IBAN"),
        ("Teamleider (bel 06-12345678)", "phone number"), ("0612345678", "phone number"),
        ("+31 6 1234 5678", "phone number"), ("020-1234567", "phone number"),
        ("j.jansen@example.nl", "email address"),
    ],
)  # fmt: skip
def test_sensitive_values_are_found(value: str, kind: str) -> None:
    assert kind in sensitive_kinds(value)


@pytest.mark.parametrize(
    "value",
    [
        "Senior HR Business Partner", "Level 3 Support", "ISO 27001 Lead Auditor",
        "Manager 2019–2023", "Medewerker 24/7 dienst", "Sales NL/BE", "Teamleider Logistiek",
        "123456789",  # fails the eleven-test: not a BSN
        "NL91 ABNA 0417 1643 01",  # wrong IBAN check digits
        "Zoë van den Berg", "O'Brien", "Data Analist", "Monteur B2", "Schaal 11 / trede 4",
    ],
)  # fmt: skip
def test_ordinary_names_and_titles_pass(value: str) -> None:
    assert sensitive_kinds(value) == []
    assert refusal(value) is None


def test_the_reason_names_the_kind_never_the_value() -> None:
    with pytest.raises(InvalidValue) as info:
        clean_text("Teamleider, BSN 111222333", "job_title")
    assert str(info.value) == "job_title: holds what looks like a BSN"
    assert "111222333" not in str(info.value)


def test_the_projector_quarantines_a_record_with_a_bsn_in_its_title() -> None:
    projector = Projector(
        load_mapping(REPO / "mappings" / "afas.toml"), b"g" * 32, today=date(2026, 11, 22)
    )
    rows = list(employees(3, seed=1))
    rows[1]["Functie"] = f"Docent (BSN {rows[1]['BSN']})"
    rows[2]["Roepnaam"] = "Anna 06-12345678"
    page = projector.project_page(rows)
    assert len(page.subjects) == 1
    assert page.rejected == [
        (1, "job_title: holds what looks like a BSN"),
        (2, "first_name: holds what looks like a phone number"),
    ]
    out = projector.project(rows[1])
    assert isinstance(out, Rejected) and rows[1]["BSN"] not in out.reason
