"""The hot path: turn raw source records into Subject dicts under a compiled mapping.

A `Projector` is built once per run from a `Mapping` and a tenant key. Per record it reads
only the source fields the mapping names, applies the same value rules as
`gateway.minimise.egress.Subject` (plain functions, no model construction), computes the keyed
subject id, and counts the *names* of everything it dropped. A record it cannot turn into a
valid Subject is rejected with a reason that names fields and rules, never values.

Subject ids are HMAC-SHA256 under the tenant key over the mapping's identity namespace and
the identity values, truncated to 128 bits. Without the key they cannot be recomputed from
an employee number or an email, unlike a plain hash.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from gateway.keys.subject import MIN_KEY_BYTES
from gateway.minimise import guard
from gateway.minimise.egress import (
    EGRESS_FIELDS,
    FORBIDDEN_CHARS,
    MAX_TEXT_LENGTH,
    InvalidValue,
    clean_email,
    is_reportable_field_name,
)
from gateway.minimise.mapping import FieldRule, LeaverRule, Mapping

#: Distinct dropped field names tracked per run; the rest are counted as `OTHER_FIELDS`.
MAX_TRACKED_NAMES: Final = 1000
#: Distinct raw values whose verdict each field remembers (names and titles repeat a lot
#: within an export; the verdict is a pure function of the value). Cleared when full.
MAX_CACHED_VALUES: Final = 8192
OTHER_FIELDS: Final = "<other fields>"
UNNAMED_FIELD: Final = "<unnamed field>"

_TRUE = frozenset({"true", "1", "yes", "y", "ja", "j"})
_FALSE = frozenset({"false", "0", "no", "n", "nee"})
_LEAF: Final[dict[str, Any]] = {}


@dataclass(slots=True)
class Rejected:
    """A record that could not become a Subject, and why (field names and rules only)."""

    reason: str


@dataclass(slots=True)
class PageResult:
    """What one page (or chunk) of source records turned into."""

    subjects: list[dict[str, Any]] = field(default_factory=list)
    #: (position in the page, reason) for each rejected record.
    rejected: list[tuple[int, str]] = field(default_factory=list)
    #: dropped source field name → number of records it was dropped from.
    dropped: Counter[str] = field(default_factory=Counter)


def safe_field_name(name: str) -> str:
    """A source field name fit for summaries and the ledger (see `is_reportable_field_name`)."""
    return name if is_reportable_field_name(name) else UNNAMED_FIELD


class Projector:
    """A mapping compiled against one tenant key."""

    def __init__(self, mapping: Mapping, key: bytes, *, today: date | None = None) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a subject key needs at least {MIN_KEY_BYTES} bytes of material")
        self.mapping = mapping
        # HMAC-SHA256 (RFC 2104) with the key pads hashed once and the namespace already
        # absorbed: per record that leaves two hash copies, which is what `hmac` does
        # too, without its per-call Python overhead. Same bytes as `hmac.new(key, ...)`.
        block = bytes(key) if len(key) <= 64 else hashlib.sha256(bytes(key)).digest()
        block = block.ljust(64, b"\x00")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._inner.update(mapping.identity.namespace.encode() + b"\x00")
        self._today = today or datetime.now(UTC).date()
        self._identity = [(name, _getter(name)) for name in mapping.identity.fields]
        ids = mapping.identity.fields
        self._one_id = ids[0] if len(ids) == 1 and "." not in ids[0] else ""
        self._fields = [
            (rule.name, rule.required, _field_reader(rule)) for rule in mapping.fields.values()
        ]
        absent = {name: None for name in EGRESS_FIELDS if name not in mapping.fields}
        # Every Subject dict is a copy of this one (keys in output order), filled in: one
        # allocation of the right size instead of growing a dict key by key.
        self._template: dict[str, Any] = {
            "subject_id": None,
            **dict.fromkeys(mapping.fields),
            **absent,
            "active": True,
        }
        self._leavers = [self._leaver_check(rule) for rule in mapping.leavers]
        self._tree = _path_tree(mapping.source_fields)
        self._flat = all(sub is _LEAF for sub in self._tree.values())
        self._top = frozenset(self._tree)
        #: Mapped source fields not yet present in any record seen by this projector.
        self._unseen = {path: _present(path) for path in mapping.source_fields}
        #: Records (objects) this projector has looked at.
        self.records_seen = 0

    @property
    def source_fields(self) -> frozenset[str]:
        """Every source field the mapping reads (the `connectors.base.Minimiser` protocol)."""
        return self.mapping.source_fields

    def subject_id(self, *values: str) -> str:
        """The keyed pseudonym for identity values (in the mapping's identity order)."""
        return self._mac("\x1f".join(values))

    def _mac(self, joined: str) -> str:
        inner = self._inner.copy()
        inner.update(joined.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16].hex()

    @property
    def unseen_source_fields(self) -> list[str]:
        """Mapped source fields absent from every record so far (a typo in the mapping?).

        Meaningful once `records_seen` is above zero. Names come from the mapping (config),
        never from the data.
        """
        return sorted(self._unseen)

    def note_fields(self, record: dict[str, Any]) -> None:
        """Count one record and strike the mapped fields it holds off the unseen list."""
        self.records_seen += 1
        if self._unseen:
            for path in [p for p, present in self._unseen.items() if present(record)]:
                del self._unseen[path]

    def note_layout(self, keys: Iterable[str], records: int) -> None:
        """`note_fields` for `records` records of one flat key layout (flat mappings only)."""
        self.records_seen += records
        if self._unseen:
            for name in self._unseen.keys() & set(keys):
                del self._unseen[name]

    def project(self, record: Any) -> dict[str, Any] | Rejected:
        """One source record → a Subject dict (all egress keys) or the reason it was refused."""
        if type(record) is not dict:
            return Rejected(f"record is {_kind(record)}, not an object")
        # One flat text identity field (the usual case) takes two lines; anything else,
        # and every way to fail, takes `_identity_of`.
        value = record.get(self._one_id) if self._one_id else None
        if type(value) is str and (value := value.strip()):
            joined = value
        else:
            found = self._identity_of(record)
            if type(found) is Rejected:
                return found
            joined = found  # type: ignore[assignment]
        inner = self._inner.copy()
        inner.update(joined.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        out = self._template.copy()
        out["subject_id"] = outer.digest()[:16].hex()
        try:
            active = True
            for has_left in self._leavers:
                if has_left(record):
                    active = False
                    break
            # A leaver is written as absent: what it lacks cannot hold it back (a deletion
            # reported by a delta query carries an id and nothing else).
            for name, required, read in self._fields:
                value = read(record)
                if value is None and required and active:
                    return Rejected(f"{name} is required but missing")
                out[name] = value
        except InvalidValue as exc:
            return Rejected(str(exc))
        out["active"] = active
        return out

    def _identity_of(self, record: dict[str, Any]) -> str | Rejected:
        """The identity values joined for the subject id, or why there are none."""
        ids = []
        for name, get in self._identity:
            value = get(record)
            if type(value) is not str:
                if value is None:
                    return Rejected(f"identity field {name} is missing")
                if isinstance(value, bool) or not isinstance(value, int):
                    return Rejected(f"identity field {name} is {_kind(value)}, expected text")
                value = str(value)
            value = value.strip()
            if not value:
                return Rejected(f"identity field {name} is empty")
            ids.append(value)
        return "\x1f".join(ids)

    def dropped_names(self, record: dict[str, Any]) -> Iterable[str]:
        """Names of the source fields in `record` that the mapping does not read."""
        if self._flat:
            return record.keys() - self._top
        return list(_walk_dropped(record, self._tree, ""))

    @property
    def flat(self) -> bool:
        """Does the mapping read top-level fields only (so a key layout says it all)?"""
        return self._flat

    def count_layout(self, keys: tuple[str, ...], records: int, dropped: Counter[str]) -> None:
        """Count `records` records sharing one key layout: dropped names, seen fields.

        Records of one export nearly always share one layout, so callers compare layouts
        and call this once per run of equal ones (flat mappings only).
        """
        for name in self.dropped_names(dict.fromkeys(keys)):
            dropped[name] += records
        self.note_layout(keys, records)

    def count_record(self, record: dict[str, Any], dropped: Counter[str]) -> None:
        """Count one record's dropped names and seen fields (any mapping)."""
        dropped.update(self.dropped_names(record))
        self.note_fields(record)

    def project_page(self, records: Iterable[Any]) -> PageResult:
        """Project many records, collecting rejections and dropped-field counts."""
        result = PageResult()
        subjects, rejected, dropped = result.subjects, result.rejected, result.dropped
        project = self.project
        layout: tuple[str, ...] = ()
        repeats = 0
        for i, record in enumerate(records):
            out = project(record)
            if type(out) is dict:
                subjects.append(out)
            else:
                rejected.append((i, out.reason))  # type: ignore[union-attr]
            if type(record) is not dict:
                continue
            if not self._flat:
                self.count_record(record, dropped)
                continue
            keys = tuple(record)
            if keys == layout:
                repeats += 1
            else:
                if repeats:
                    self.count_layout(layout, repeats, dropped)
                layout, repeats = keys, 1
        if repeats:
            self.count_layout(layout, repeats, dropped)
        if dropped:
            result.dropped = tidy_names(dropped)
        return result

    def _leaver_check(self, rule: LeaverRule) -> Callable[[dict[str, Any]], bool]:
        """`record -> has left?` for one leaver rule, cached per distinct text value."""
        cache: dict[str, bool | str] = {}
        src = rule.field
        get = _getter(src)
        flat = "." not in src

        def has_left(record: dict[str, Any]) -> bool:
            value = record.get(src) if flat else get(record)
            if type(value) is not str:
                return self._has_left(rule, value)
            verdict = cache.get(value)
            if verdict is None:
                try:
                    verdict = self._has_left(rule, value)
                except InvalidValue as exc:
                    verdict = exc.rule
                if len(cache) >= MAX_CACHED_VALUES:
                    cache.clear()
                cache[value] = verdict
            if verdict is True or verdict is False:
                return verdict
            raise InvalidValue(f"leaver field {rule.field}", verdict)

        return has_left

    def _has_left(self, rule: LeaverRule, value: Any) -> bool:
        if value is None or value == "":
            return False
        where = f"leaver field {rule.field}"
        if rule.when == "date_past":
            return _parse_date(value, where) < self._today
        if isinstance(value, dict | list | float):
            raise InvalidValue(where, f"is {_kind(value)}, expected text")
        text = str(value).strip().lower()
        if rule.when == "in":
            return text in rule.values
        if text not in _TRUE and text not in _FALSE:
            raise InvalidValue(where, "is not a yes/no value")
        return (text in _TRUE) == (rule.when == "true")


def merge_dropped(total: Counter[str], part: Counter[str]) -> None:
    """Add one page's dropped-name counts to a run's, keeping the name set bounded."""
    total.update(part)
    if len(total) > MAX_TRACKED_NAMES:
        total.update(tidy_names(total) - total)


def tidy_names(counts: Counter[str]) -> Counter[str]:
    """Counts under reportable names, at most `MAX_TRACKED_NAMES` of them."""
    tidy: Counter[str] = Counter()
    for name, n in counts.items():
        tidy[safe_field_name(name)] += n
    if len(tidy) > MAX_TRACKED_NAMES:
        keep = dict(tidy.most_common(MAX_TRACKED_NAMES - 1))
        other = sum(tidy.values()) - sum(keep.values())
        tidy = Counter(keep)
        tidy[OTHER_FIELDS] += other
    return tidy


# --------------------------------------------------------------------------- field reading


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    if "." not in path:
        return lambda record: record.get(path)
    parts = tuple(path.split("."))

    def get(record: dict[str, Any]) -> Any:
        # A flat record's own column named with a dot ("Func.omschr" in a CSV export)
        # before the nested path the dots would otherwise spell.
        if path in record:
            return record[path]
        node: Any = record
        for part in parts:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        return node

    return get


def _field_reader(rule: FieldRule) -> Callable[[dict[str, Any]], str | None]:
    """Compile one egress field rule into `record -> clean value or None`.

    The common case (one flat source holding a string) costs one dict lookup and one call
    to the finisher; everything else takes the general path.
    """
    getters = [(src, _getter(src)) for src in rule.sources]
    finish = _finisher(rule)
    name = rule.name

    def text_of(src: str, value: Any) -> str | None:
        if isinstance(value, str):
            return value
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise InvalidValue(name, f"source {src} is {_kind(value)}, expected text")

    flat = all("." not in src for src in rule.sources)
    sources = rule.sources
    if rule.mode == "join" and flat:
        sep = rule.separator

        def read_join_flat(record: dict[str, Any]) -> str | None:
            parts = []
            for src in sources:
                value = record.get(src)
                if type(value) is not str:
                    value = text_of(src, value)
                    if value is None:
                        continue
                if value := value.strip():
                    parts.append(value)
            return finish(sep.join(parts)) if parts else None

        return read_join_flat

    if rule.mode == "join":
        sep = rule.separator

        def read_join(record: dict[str, Any]) -> str | None:
            parts = []
            for src, get in getters:
                text = text_of(src, get(record))
                if text is not None and not text.isspace() and text:
                    parts.append(text.strip())
            return finish(sep.join(parts)) if parts else None

        return read_join

    if len(getters) == 1 and "." not in rule.sources[0]:
        src0 = rule.sources[0]

        def read_one(record: dict[str, Any]) -> str | None:
            value = record.get(src0)
            if type(value) is not str:
                value = text_of(src0, value)
                if value is None:
                    return None
            return finish(value)

        return read_one

    if flat:

        def read_first_flat(record: dict[str, Any]) -> str | None:
            for src in sources:
                value = record.get(src)
                if type(value) is not str:
                    value = text_of(src, value)
                    if value is None:
                        continue
                value = finish(value)
                if value is not None:
                    return value
            return None

        return read_first_flat

    def read_first(record: dict[str, Any]) -> str | None:
        for src, get in getters:
            text = text_of(src, get(record))
            if text is not None:
                value = finish(text)
                if value is not None:
                    return value
        return None

    return read_first


def _finisher(rule: FieldRule) -> Callable[[str], str | None]:
    """`raw text -> clean value`, or None when only whitespace is left.

    Applies the egress rules of `clean_text` / `clean_email` and the mapping's normalisers
    in one function, since it runs for every field of every record.
    """
    name = rule.name
    if name == "email":

        def finish_email(value: str) -> str | None:
            return clean_email(value, name) if value and not value.isspace() else None

        return finish_email
    forbidden = FORBIDDEN_CHARS.search
    candidate = guard.CANDIDATE.search
    nfc = "nfc" in rule.normalisers
    collapse = "collapse_whitespace" in rule.normalisers
    cases = [_CASES[n] for n in rule.normalisers if n in _CASES]

    def clean(value: str) -> str | None:
        value = value.strip()
        if not value:
            return None
        if forbidden(value):
            raise InvalidValue(name, "contains a control character")
        if not value.isascii():
            if nfc:
                value = unicodedata.normalize("NFC", value)
            if collapse:
                value = " ".join(value.split())
        elif collapse and "  " in value:
            value = " ".join(value.split())
        for case in cases:
            value = case(value)
        if len(value) > MAX_TEXT_LENGTH:
            value = value[:MAX_TEXT_LENGTH].rstrip()
        if candidate(value):
            why = guard.refusal(value)
            if why is not None:
                raise InvalidValue(name, why)
        return value

    # The verdict (clean value, None, or the broken rule) depends on the raw value only:
    # remember it, so a title shared by 4,000 people is checked once.
    cache: dict[str, str | _Refused | None] = {}

    def finish(value: str) -> str | None:
        try:
            verdict = cache[value]
        except KeyError:
            try:
                verdict = clean(value)
            except InvalidValue as exc:
                verdict = _Refused(exc.rule)
            if len(cache) >= MAX_CACHED_VALUES:
                cache.clear()
            cache[value] = verdict
        if type(verdict) is _Refused:
            raise InvalidValue(name, verdict.rule)
        return verdict  # type: ignore[return-value]

    return finish


@dataclass(frozen=True, slots=True)
class _Refused:
    """A cached verdict: the value broke `rule` (the exception is raised afresh each time)."""

    rule: str


_CASES: Final[dict[str, Callable[[str], str]]] = {
    "lower": str.lower,
    "upper": str.upper,
    "title": str.title,
}


def _parse_date(value: Any, where: str) -> date:
    if not isinstance(value, str):
        raise InvalidValue(where, f"is {_kind(value)}, expected a date")
    text = value.strip()
    try:
        if len(text) >= 10 and text[4] == "-":
            return date.fromisoformat(text[:10])
        if len(text) == 10 and text[2] in "-/" and text[5] == text[2]:
            return date(int(text[6:]), int(text[3:5]), int(text[:2]))
    except ValueError:
        pass
    raise InvalidValue(where, "is not a date (expected YYYY-MM-DD or DD-MM-YYYY)")


def _kind(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "text"
    return "of an unsupported type"


def _path_tree(paths: Iterable[str]) -> dict[str, Any]:
    """Source paths as a tree: `{"properties": {"email": LEAF}}`; LEAF means read whole."""
    tree: dict[str, Any] = {}
    for path in sorted(paths, key=lambda p: p.count(".")):
        if "." in path:
            tree.setdefault(path, _LEAF)  # a flat record's own dotted column (see `_getter`)
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is _LEAF:
                break
            node = node.setdefault(part, {})
        else:
            node[parts[-1]] = _LEAF
    return tree


def _walk_dropped(record: dict[str, Any], tree: dict[str, Any], prefix: str) -> Iterator[str]:
    for key, value in record.items():
        sub = tree.get(key)
        if sub is None:
            yield prefix + str(key)
        elif sub is not _LEAF and isinstance(value, dict):
            yield from _walk_dropped(value, sub, f"{prefix}{key}.")


def _present(path: str) -> Callable[[dict[str, Any]], bool]:
    """`record -> does it hold the key path` (present, whatever the value)."""
    parts = path.split(".")
    last = parts[-1]
    parents = parts[:-1]

    def present(record: dict[str, Any]) -> bool:
        if path in record:
            return True
        node: Any = record
        for part in parents:
            node = node.get(part)
            if not isinstance(node, dict):
                return False
        return last in node

    return present
