"""Mapping files: validation with file/line/field errors, deny by default, digests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.minimise.mapping import MappingError, load_mapping, parse_mapping

GOOD = """\
connector = "afas"

[identity]
fields = ["Medewerker"]

[fields.first_name]
source = ["Roepnaam", "Voornaam"]
category = "user.name.first"

[fields.last_name]
join = ["Voorvoegsel", "Achternaam"]
category = "user.name.last"

[fields.email]
source = "Email_werk"
category = "user.contact.email"
required = true

[fields.job_title]
source = "Functie"
category = "user.job_title"

[[leaver]]
field = "Datum_uit_dienst"
when = "date_past"
"""


def _error(text: str, tmp_path: Path) -> MappingError:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert str(path) in str(info.value)
    return info.value


def test_bundled_afas_mapping_loads(afas_mapping_path: Path) -> None:
    m = load_mapping(afas_mapping_path)
    assert list(m.fields) == ["first_name", "last_name", "email", "job_title"]
    assert m.categories["email"] == "user.contact.email"
    assert m.identity.fields == ("Medewerker",)
    assert "BSN" not in m.source_fields
    assert m.digest.startswith("sha256:") and len(m.digest) == 71


def test_digest_ignores_comments_and_layout_but_not_meaning() -> None:
    base = parse_mapping(GOOD)
    reordered = GOOD.replace(
        'source = "Functie"\ncategory = "user.job_title"',
        '# the title\ncategory   =   "user.job_title"\nsource = "Functie"',
    )
    assert parse_mapping(reordered).digest == base.digest
    changed = GOOD.replace('source = "Functie"', 'source = "Functie_omschrijving"')
    assert parse_mapping(changed).digest != base.digest
    defaults_spelled_out = GOOD.replace(
        'category = "user.job_title"',
        'category = "user.job_title"\nnormalise = ["nfc", "collapse_whitespace"]\nrequired = false',
    )
    assert parse_mapping(defaults_spelled_out).digest == base.digest


@pytest.mark.parametrize(
    ("edit", "line", "field", "words"),
    [
        (
            ("[fields.job_title]", "[fields.salary]"),
            19,
            "fields.salary",
            "unknown egress field",
        ),
        (
            ('category = "user.job_title"', 'category = "user.financial"'),
            21,
            "fields.job_title.category",
            "unknown data category",
        ),
        (
            ('category = "user.job_title"', 'category = "user.contact.email"'),
            21,
            "fields.job_title.category",
            "does not describe job_title",
        ),
        (
            ('source = "Functie"', 'source = "*"'),
            20,
            "fields.job_title.source",
            "wildcards",
        ),
        (
            ('source = "Functie"', 'source = "Functie"\nall_fields = true'),
            21,
            "fields.job_title.all_fields",
            '"all fields" cannot be expressed',
        ),
        (
            ('source = "Functie"', 'source = "Email_werk"'),
            19,
            "fields.job_title",
            "mapped twice",
        ),
        (
            ('fields = ["Medewerker"]', ""),
            3,
            "identity.fields",
            "required option is missing",
        ),
        (
            ('source = "Functie"', 'sorce = "Functie"'),
            20,
            "fields.job_title.sorce",
            "unknown option",
        ),
        (
            ('when = "date_past"', 'when = "sometimes"'),
            25,
            "leaver.0.when",
            "date_past",
        ),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, edit: tuple[str, str], line: int, field: str, words: str
) -> None:
    err = _error(GOOD.replace(*edit, 1), tmp_path)
    assert err.field == field
    assert err.line == line, str(err)
    assert words in err.problem
    assert f":{line}: {field}: " in str(err)


def test_missing_identity_table(tmp_path: Path) -> None:
    err = _error(GOOD.replace('[identity]\nfields = ["Medewerker"]\n', ""), tmp_path)
    assert err.field == "identity"
    assert "missing" in err.problem


def test_an_egress_field_declared_twice_is_a_clear_error(tmp_path: Path) -> None:
    err = _error(
        GOOD + '\n[fields.email]\nsource = "Email_prive"\ncategory = "user.contact.email"\n',
        tmp_path,
    )
    assert err.line == 27
    assert "mapped twice" in err.problem


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    err = _error(GOOD.replace('source = "Functie"', "source = Functie"), tmp_path)
    assert err.line == 20
    assert "bad TOML" in err.problem


@pytest.mark.parametrize(
    "text",
    [
        GOOD.replace('connector = "afas"', 'connector = "afas"\nall = true'),
        GOOD.replace('source = "Functie"', 'source = "Fun*"'),
        GOOD.replace('source = "Functie"', 'source = ["Functie", "x.*"]'),
        GOOD.replace("[fields.job_title]", '[fields."*"]'),
    ],
)
def test_send_everything_cannot_be_expressed(text: str) -> None:
    with pytest.raises(MappingError):
        parse_mapping(text)


def test_email_takes_no_normalisers() -> None:
    with pytest.raises(MappingError, match="takes no normalisers"):
        parse_mapping(
            GOOD.replace('source = "Email_werk"', 'source = "Email_werk"\nnormalise = ["upper"]')
        )


def test_unknown_normaliser_and_values_rule() -> None:
    with pytest.raises(MappingError, match="unknown normaliser"):
        parse_mapping(
            GOOD.replace('source = "Functie"', 'source = "Functie"\nnormalise = ["shout"]')
        )
    with pytest.raises(MappingError, match="values"):
        parse_mapping(GOOD.replace('when = "date_past"', 'when = "in"'))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "nope.toml")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(GOOD.replace("afas", "caf\xe9").encode("latin-1"))
    with pytest.raises(MappingError, match="not UTF-8"):
        load_mapping(latin)
