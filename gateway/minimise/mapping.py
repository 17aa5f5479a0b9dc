"""Minimisation mappings: a declarative TOML file compiled into a fast projector.

A mapping says which source fields identify a person (they only feed the keyed subject
id), which source fields fill which egress field, the data category of each egress field,
and when a person counts as a leaver. Everything it does not name is dropped: deny by
default. The file is validated up front, and every error names the file, the line and the
field, because a customer admin reads these messages while previewing a mapping.

`Mapping.digest` is the sha256 of a canonical form (defaults filled in, keys sorted), so
that comments and layout do not change it but any change in meaning does. Authorisations
pin this digest.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.minimise.egress import EGRESS_FIELDS, FIELD_CATEGORIES, KNOWN_CATEGORIES

#: Text normalisers a mapping may apply, in the order they are listed.
NORMALISERS: Final = ("nfc", "collapse_whitespace", "lower", "upper", "title")
DEFAULT_NORMALISERS: Final = ("nfc", "collapse_whitespace")
LeaverWhen = Literal["date_past", "true", "false", "in"]

#: A source field: any printable text without wildcard or brace characters, spaces inside
#: allowed (CSV exports name columns "Job Title" or "E-mail adres"), none at either end.
_FIELD_NAME = re.compile(
    r"^[^\s*?\[\]{}\x00-\x1f\x7f](?:[^*?\[\]{}\x00-\x1f\x7f]*[^\s*?\[\]{}\x00-\x1f\x7f])?$"
)
_WILDCARDS = ("*", "?", "[", "]")
_FORBIDDEN_SWITCHES = ("all", "all_fields", "include_all", "passthrough", "wildcard", "everything")


class MappingError(ValueError):
    """A mapping file that cannot be used, with where and why."""

    def __init__(self, path: str, line: int | None, field: str, problem: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {field}: {problem}" if field else f"{where}: {problem}")
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem


# --------------------------------------------------------------------------- file schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_source_name(name: str) -> str:
    if any(c in name for c in _WILDCARDS):
        raise ValueError("wildcards cannot be used: name each source field")
    if not _FIELD_NAME.match(name) or name.startswith(".") or name.endswith(".") or ".." in name:
        raise ValueError("not a valid source field name")
    return name


class _IdentityFile(_Strict):
    fields: list[str] = Field(min_length=1)
    namespace: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("fields")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [_check_source_name(v) for v in value]


class _FieldFile(_Strict):
    source: str | list[str] | None = None
    join: list[str] | None = Field(default=None, min_length=2)
    separator: str = " "
    category: str
    normalise: list[str] | None = None
    required: bool = False

    @field_validator("source", "join")
    @classmethod
    def _names(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _check_source_name(value)
        if not value:
            raise ValueError("name at least one source field")
        return [_check_source_name(v) for v in value]


class _LeaverFile(_Strict):
    field: str
    when: LeaverWhen
    values: list[str] | None = None

    @field_validator("field")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_source_name(value)


class _MappingFile(_Strict):
    connector: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    identity: _IdentityFile
    fields: dict[str, _FieldFile] = Field(min_length=1)
    leaver: list[_LeaverFile] = Field(default_factory=list)


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one egress field is filled."""

    name: str
    sources: tuple[str, ...]
    mode: Literal["first", "join"]
    separator: str
    normalisers: tuple[str, ...]
    category: str
    required: bool


@dataclass(frozen=True, slots=True)
class LeaverRule:
    """When a source record describes someone who has left (`active = false`)."""

    field: str
    when: LeaverWhen
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """Source fields that identify a person; used only to compute the subject id."""

    fields: tuple[str, ...]
    namespace: str


@dataclass(frozen=True)
class Mapping:
    """A validated mapping. Build one with `load_mapping` or `parse_mapping`."""

    connector: str
    description: str
    identity: Identity
    fields: dict[str, FieldRule]
    leavers: tuple[LeaverRule, ...]
    path: str = "<mapping>"
    #: The TOML it was parsed from: what a source worker process is handed to compile the
    #: same mapping (`gateway.sync.source_process`). Not part of its meaning (the digest).
    text: str = field(default="", compare=False, repr=False)

    def canonical(self) -> dict[str, Any]:
        """The meaning of the mapping with defaults filled in: what the digest covers."""
        return {
            "connector": self.connector,
            "identity": {
                "fields": list(self.identity.fields),
                "namespace": self.identity.namespace,
            },
            "fields": {
                name: {
                    "sources": list(rule.sources),
                    "mode": rule.mode,
                    "separator": rule.separator,
                    "normalise": list(rule.normalisers),
                    "category": rule.category,
                    "required": rule.required,
                }
                for name, rule in sorted(self.fields.items())
            },
            "leaver": [
                {"field": r.field, "when": r.when, "values": list(r.values)} for r in self.leavers
            ],
        }

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of the canonical form: the version id authorisations pin."""
        body = orjson.dumps(self.canonical(), option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    @property
    def categories(self) -> dict[str, str]:
        """Egress field name → data category, for the ledger and the authorisation screen."""
        return {name: rule.category for name, rule in self.fields.items()}

    @property
    def source_fields(self) -> frozenset[str]:
        """Every source path the mapping reads; anything else is dropped."""
        names: set[str] = set(self.identity.fields)
        for rule in self.fields.values():
            names.update(rule.sources)
        names.update(r.field for r in self.leavers)
        return frozenset(names)


# --------------------------------------------------------------------------- loading


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file; raise `MappingError` naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MappingError(str(p), None, "", f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise MappingError(str(p), None, "", f"cannot read the file ({exc.strerror})") from None
    return parse_mapping(text, str(p))


_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")
_TOML_TWICE = re.compile(r"Cannot (?:declare|overwrite a value) \(?'?([^)]*?)'?\)? twice")


#: Deepest nesting of tables and arrays a mapping may have; real ones use three levels.
MAX_NESTING: Final = 16


def _too_deep(raw: dict[str, Any]) -> tuple[str, ...] | None:
    """The key path where `raw` first nests deeper than `MAX_NESTING`, or None.

    Iterative, so that the check itself cannot overflow the stack it protects."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(raw, ())]
    while stack:
        node, loc = stack.pop()
        if len(loc) > MAX_NESTING:
            return loc
        if isinstance(node, dict):
            stack.extend((v, (*loc, str(k))) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, (*loc, str(i))) for i, v in enumerate(node))
    return None


def parse_mapping(text: str, path: str = "<mapping>") -> Mapping:
    """Validate mapping text (TOML); `path` only labels error messages."""
    deep = MappingError(path, None, "", f"nested more than {MAX_NESTING} levels deep")
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels of
        # `[[[...` exhaust the stack before any check of ours could run.
        raise deep from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        at = _TOML_AT.search(msg)
        line = int(at.group(1)) if at else None
        problem = _TOML_AT.sub("", msg).strip()
        if "twice" in problem or "overwrite" in problem:
            problem = f"mapped twice: {problem}"
        raise MappingError(path, line, "", f"bad TOML: {problem}") from None
    locate = _Locator(text)
    too_deep = _too_deep(raw)
    if too_deep is not None:
        raise MappingError(path, locate(too_deep[:1]), too_deep[0], deep.problem)
    _refuse_wildcards(raw, path, locate)
    try:
        doc = _MappingFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        field = ".".join(loc)
        problem = _describe(err)
        raise MappingError(path, locate(loc), field, problem) from None
    return _compile(doc, path, locate, text)


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown option (a mapping can only name sources, categories and normalisers)"
    if kind == "missing":
        return "required option is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _refuse_wildcards(raw: dict[str, Any], path: str, locate: _Locator) -> None:
    def walk(node: Any, loc: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*loc, str(key))
                if str(key).lower() in _FORBIDDEN_SWITCHES:
                    raise MappingError(
                        path,
                        locate(here),
                        ".".join(here),
                        '"all fields" cannot be expressed: name each egress field',
                    )
                if any(c in str(key) for c in _WILDCARDS):
                    raise MappingError(
                        path, locate(here), ".".join(here), "wildcards cannot be used"
                    )
                walk(value, here)

    walk(raw, ())


def _compile(doc: _MappingFile, path: str, locate: _Locator, text: str) -> Mapping:
    fields: dict[str, FieldRule] = {}
    used_by: dict[str, str] = {}
    for name, spec in doc.fields.items():
        loc = ("fields", name)
        here = f"fields.{name}"
        if name not in EGRESS_FIELDS:
            raise MappingError(
                path,
                locate(loc),
                here,
                f"unknown egress field (the egress schema has only {', '.join(EGRESS_FIELDS)})",
            )
        if spec.category not in KNOWN_CATEGORIES:
            raise MappingError(
                path,
                locate((*loc, "category")),
                f"{here}.category",
                f"unknown data category {spec.category!r}",
            )
        if spec.category not in FIELD_CATEGORIES[name]:
            allowed = ", ".join(sorted(FIELD_CATEGORIES[name]))
            raise MappingError(
                path,
                locate((*loc, "category")),
                f"{here}.category",
                f"{spec.category!r} does not describe {name} (use one of: {allowed})",
            )
        if (spec.source is None) == (spec.join is None):
            raise MappingError(path, locate(loc), here, "give exactly one of `source` or `join`")
        mode: Literal["first", "join"]
        if spec.join is not None:
            sources, mode = tuple(spec.join), "join"
        else:
            assert spec.source is not None
            sources = (spec.source,) if isinstance(spec.source, str) else tuple(spec.source)
            mode = "first"
        for src in sources:
            if src in used_by:
                raise MappingError(
                    path,
                    locate(loc),
                    here,
                    f"source field {src!r} is mapped twice ({used_by[src]} and {name})",
                )
            used_by[src] = name
        normalisers = tuple(spec.normalise) if spec.normalise is not None else None
        if name == "email":
            if normalisers:
                raise MappingError(
                    path,
                    locate((*loc, "normalise")),
                    f"{here}.normalise",
                    "email is always trimmed, lower-cased and syntax-checked; "
                    "it takes no normalisers",
                )
            normalisers = ()
        elif normalisers is None:
            normalisers = DEFAULT_NORMALISERS
        for n in normalisers:
            if n not in NORMALISERS:
                raise MappingError(
                    path,
                    locate((*loc, "normalise")),
                    f"{here}.normalise",
                    f"unknown normaliser {n!r} (known: {', '.join(NORMALISERS)})",
                )
        fields[name] = FieldRule(
            name=name,
            sources=sources,
            mode=mode,
            separator=spec.separator,
            normalisers=normalisers,
            category=spec.category,
            required=spec.required,
        )
    leavers = []
    for i, rule in enumerate(doc.leaver):
        if (rule.when == "in") != bool(rule.values):
            raise MappingError(
                path,
                locate(("leaver", str(i))),
                f"leaver[{i}]",
                '`values` is needed with when = "in" and only then',
            )
        values = tuple(v.strip().lower() for v in rule.values or ())
        leavers.append(LeaverRule(field=rule.field, when=rule.when, values=values))
    ordered: dict[str, FieldRule] = {n: fields[n] for n in EGRESS_FIELDS if n in fields}
    return Mapping(
        connector=doc.connector,
        description=doc.description,
        identity=Identity(
            fields=tuple(doc.identity.fields),
            namespace=doc.identity.namespace or doc.connector,
        ),
        fields=ordered,
        leavers=tuple(leavers),
        path=path,
        text=text,
    )


class _Locator:
    """Finds the line of a TOML key path, for error messages (tomllib keeps no positions)."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.*?\-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.entries: list[tuple[int, tuple[str, ...]]] = []
        table: tuple[str, ...] = ()
        arrays: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = tuple(_unquote(p) for p in header.group(1).split("."))
                if line.lstrip().startswith("[["):
                    index = arrays.get(table, -1) + 1
                    arrays[table] = index
                    table = (*table, str(index))
                self.entries.append((number, table))
                continue
            key = self._KEY.match(line)
            if key:
                parts = tuple(_unquote(p) for p in key.group(1).split("."))
                self.entries.append((number, (*table, *parts)))

    def __call__(self, loc: Iterable[str]) -> int | None:
        want = tuple(loc)
        while want:
            for number, path in self.entries:
                if path == want:
                    return number
            want = want[:-1]
        return None


def _unquote(part: str) -> str:
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part
