"""The console's two catalogues say the same things, and the language is chosen as promised."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from gateway.console.i18n import CATALOGUES, EN, NL, choose, translator

TEMPLATES = Path(__file__).resolve().parents[2] / "gateway" / "console" / "templates"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys() -> None:
    assert set(EN) == set(NL), sorted(set(EN) ^ set(NL))


def test_both_languages_have_the_same_placeholders() -> None:
    for key, text in EN.items():
        assert placeholders(text) == placeholders(NL[key]), key


def test_no_text_is_empty_or_left_untranslated() -> None:
    for lang, catalogue in CATALOGUES.items():
        for key, text in catalogue.items():
            assert text.strip(), (lang, key)
    same = [k for k in EN if EN[k] == NL[k] and len(EN[k]) > 12]
    assert not same, same


def test_every_key_the_templates_use_exists() -> None:
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_]+)["']\s*[,)]""", path.read_text()))
    assert used, "no keys found"
    assert used <= set(EN), sorted(used - set(EN))


def test_every_key_the_code_uses_exists() -> None:
    code = Path(__file__).resolve().parents[2] / "gateway" / "console"
    used: set[str] = set()
    for path in code.glob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z_]+)["']""", text))
        used |= set(re.findall(r"""PageError\(\s*\d+,\s*["']([a-z_]+\.[a-z_]+)["']""", text))
    assert used <= set(EN), sorted(used - set(EN))


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "nl-NL,nl;q=0.9,en;q=0.8", "nl"),
        (None, "de-DE,de;q=0.9", "en"),
        (None, "en;q=0.5,nl;q=0.8", "nl"),
        (None, "nl;q=0,en", "en"),
        ("nl", "en", "nl"),
        ("en", "nl", "en"),
        ("fr", "nl", "nl"),
        (None, "nl;q=bogus, en", "en"),
    ],
)
def test_language_choice(cookie: str | None, header: str | None, expected: str) -> None:
    assert choose(cookie, header) == expected


def test_translator_fills_placeholders() -> None:
    assert translator("nl")("signin.throttled", seconds=30) == (
        "Te veel pogingen. Probeer het over 30 seconden opnieuw."
    )
