"""The console's words in English and Dutch, one flat catalogue per language.

Templates call `t("key", name=value)`; a key missing from a catalogue is a bug the suite
catches (both catalogues must have the same keys and the same placeholders), so no page
ever shows a raw key. The language is the `lang` cookie the toggle sets, else the first
supported language of `Accept-Language`, else English.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from gateway.console.words_en import EN
from gateway.console.words_nl import NL

Lang = Literal["en", "nl"]
LANGS: Final[tuple[Lang, ...]] = ("en", "nl")
DEFAULT: Final[Lang] = "en"
COOKIE: Final = "lang"


CATALOGUES: Final[dict[Lang, dict[str, str]]] = {"en": EN, "nl": NL}

Translate = Callable[..., str]


def translator(lang: Lang) -> Translate:
    """`t(key, **values)` for one language; a key only English has falls back to English."""
    catalogue = CATALOGUES[lang]

    def t(key: str, **values: object) -> str:
        text = catalogue.get(key) or EN[key]
        return text.format(**values) if values else text

    return t


def _as_lang(value: str | None) -> Lang | None:
    value = (value or "").strip().lower()
    for lang in LANGS:
        if value == lang or value.startswith(lang + "-"):
            return lang
    return None


def choose(cookie: str | None, accept_language: str | None) -> Lang:
    """The cookie's language if supported, else Accept-Language's best supported, else English."""
    chosen = _as_lang(cookie)
    if chosen is not None:
        return chosen
    ranked: list[tuple[float, int, Lang]] = []
    for n, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.partition(";")
        lang = _as_lang(tag)
        if lang is None:
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if quality > 0:
            ranked.append((-quality, n, lang))
    return min(ranked)[2] if ranked else DEFAULT
