"""Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note) and the key that signs them.

A checkpoint is the portable statement "log <origin> had <size> entries with root <hash> at
<time>", signed with Ed25519. It is plain text so that an auditor can read it, keep it, and
check a later export against it without our software: the format is the one the Go
transparency tooling (`golang.org/x/mod/sumdb/note`, `tlog-checkpoint`) reads and writes.

    gateway.example.com/sluis/acme
    1024
    <base64 root>
    time 2025-06-01T10:00:00.000000Z

    — gateway.example.com/sluis/acme <base64(4-byte key id || 64-byte signature)>

Each tenant's ledger is a log of its own. As C2SP recommends, its origin is a schema-less
URL naming it uniquely, `<log name>/<tenant>`, where the log name is the gateway's
`ledger_name` setting (by default `sluis.invalid/<16 hex digits of the signing key's
SHA-256>`: unique per key and plainly not an address), and the key name in the signature
line is the origin itself. A log keeps the origin of its first checkpoint for good: logs
begun before origins were configurable (`sluis/<tenant>`, signed as `sluis-ledger`) carry on
under those names, so checkpoints an auditor kept still verify and extend.

The key id binds the key name and the public key (first 4 bytes of SHA-256(name || "\\n" ||
0x01 || key)), so a verifier can tell "signed by a key I do not know" from "signed badly".
`verifier_key` writes the `name+keyid+key` line Go's `note.NewVerifier` reads.

The signing key's files are handled in `gateway.keys.signing`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.keys.signing import LOG_NAME_PATTERN
from gateway.ledger.merkle import HASH_SIZE

#: Key name and origin prefix of logs begun before the origin was configurable.
LEGACY_KEY_NAME: Final = "sluis-ledger"
LEGACY_ORIGIN_PREFIX: Final = "sluis/"
#: A reserved top-level domain (RFC 6761): the default log name names, it does not point.
DEFAULT_LOG_DOMAIN: Final = "sluis.invalid"
#: Signature algorithm byte of the signed-note format for Ed25519.
ED25519_ALG: Final = b"\x01"
MAX_NOTE_BYTES: Final = 16 * 1024
_SIG_PREFIX: Final = "\u2014 "
_TIME_PREFIX: Final = "time "
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_NAME = re.compile(r"[!-*,-~]{1,255}")  # printable ASCII, no space and no '+'
#: A tenant id as it ends an origin (the ledger's identifier rule, see `ledger.entry`).
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted; the message says why (no secrets, no entries)."""


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with a `Z` and always six fraction digits: one spelling per instant."""
    if value.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise CheckpointError("time line is not RFC 3339 UTC") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed statement about a log: origin, size, root and when it was made."""

    origin: str
    size: int
    root: bytes
    time: datetime

    def body(self) -> str:
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n{_TIME_PREFIX}{format_time(self.time)}\n"


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """First 4 bytes of SHA-256(name || '\\n' || 0x01 || raw key), as signed-note defines."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + raw).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The `name+hexid+base64` verifier key string Go's note package and witnesses accept."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    encoded = base64.b64encode(ED25519_ALG + raw).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, Ed25519PublicKey]:
    """The key name and Ed25519 key of a `name+hexid+base64` verifier key; `CheckpointError`
    unless the id is the one the name and key make (as signed-note requires)."""
    name, sep1, rest = vkey.strip().partition("+")
    hex_id, sep2, encoded = rest.partition("+")
    if not (sep1 and sep2) or not _KEY_NAME.fullmatch(name) or len(hex_id) != 8:
        raise CheckpointError("not a verifier key (name+keyid+key)")
    try:
        kid = bytes.fromhex(hex_id)
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("verifier key id or key is not well encoded") from None
    if len(raw) != 33 or raw[:1] != ED25519_ALG:
        raise CheckpointError("verifier key is not an Ed25519 key")
    public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_id(name, public_key) != kid:
        raise CheckpointError("verifier key id does not match its name and key")
    return name, public_key


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def default_log_name(public_key: Ed25519PublicKey) -> str:
    """`sluis.invalid/<fingerprint>`: unique per signing key, stable across hosts."""
    return f"{DEFAULT_LOG_DOMAIN}/{key_fingerprint(public_key)}"


def key_name_for(origin: str) -> str:
    """The key name a log's checkpoints are signed under: its origin (C2SP), except for
    logs begun under the legacy `sluis/<tenant>` origins, which keep `sluis-ledger`."""
    return LEGACY_KEY_NAME if origin.startswith(LEGACY_ORIGIN_PREFIX) else origin


class CheckpointSigner:
    """Signs checkpoints with one Ed25519 key; each log under the key name its origin gives.

    `log_name` (a schema-less URL such as `gateway.example.com/sluis`) makes the origins of
    new logs, `<log_name>/<tenant>`; without it, `default_log_name` of the key.
    """

    def __init__(self, private_key: Ed25519PrivateKey, log_name: str | None = None) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.log_name = log_name or default_log_name(self.public_key)
        if not re.fullmatch(LOG_NAME_PATTERN, self.log_name):
            raise ValueError(
                "the ledger name must be a schema-less URL such as gateway.example.com/sluis"
            )
        self._key_ids: dict[str, bytes] = {}

    def origin_for(self, tenant: str) -> str:
        """The origin a new log of `tenant` gets."""
        return f"{self.log_name}/{tenant}"

    def sign(self, checkpoint: Checkpoint) -> str:
        """The complete signed note for `checkpoint`, under the key name of its origin."""
        name = key_name_for(checkpoint.origin)
        if not _KEY_NAME.fullmatch(name):
            raise ValueError("a key name is 1-255 printable ASCII characters, no space or '+'")
        kid = self._key_ids.get(name)
        if kid is None:
            kid = self._key_ids[name] = key_id(name, self.public_key)
        body = checkpoint.body()
        sig = self._key.sign(body.encode("utf-8"))
        blob = base64.b64encode(kid + sig).decode("ascii")
        return f"{body}\n{_SIG_PREFIX}{name} {blob}\n"


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise CheckpointError("note is too large")
    if any(c < " " and c != "\n" for c in note):
        raise CheckpointError("note contains control characters")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise CheckpointError("note has no signature block")
    body, block = note[: cut + 1], note[cut + 2 :]
    sigs: list[tuple[str, bytes, bytes]] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError("malformed signature line")
        name, _, blob = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("signature is not base64") from None
        if not name or len(raw) < 5:
            raise CheckpointError("malformed signature line")
        sigs.append((name, raw[:4], raw[4:]))
    if not sigs:
        raise CheckpointError("note has no signatures")
    return body, sigs


def parse_body(body: str) -> Checkpoint:
    """Parse the checkpoint text (without signatures). Does not check any signature."""
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines[:-1]
    if not origin:
        raise CheckpointError("checkpoint has an empty origin")
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError("checkpoint size is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("checkpoint root is not base64") from None
    if len(root) != HASH_SIZE:
        raise CheckpointError("checkpoint root is not 32 bytes")
    times = [e for e in extensions if e.startswith(_TIME_PREFIX)]
    if len(times) != 1 or any(not e for e in extensions):
        raise CheckpointError("checkpoint needs exactly one time line")
    when = parse_time(times[0][len(_TIME_PREFIX) :])
    return Checkpoint(origin, int(size_text), root, when)


def read_unverified(note: str) -> Checkpoint:
    """The checkpoint in a note *without* checking signatures: for notes we wrote ourselves
    and only need to read back (the time of the last one, the anchor of a proof)."""
    cut = note.rfind("\n\n")
    return parse_body(note[: cut + 1] if cut >= 0 else note)


def open_checkpoint(
    note: str, public_key: Ed25519PublicKey, *, name: str | None = None
) -> Checkpoint:
    """Return the checkpoint in `note` if the trusted key signed it; else `CheckpointError`.

    Signatures by other keys (witness cosignatures, say) are ignored, but at least one line
    must carry the trusted key's id and a valid signature. The key name is taken from the
    line and bound by the key id; pass `name` to insist on one.
    """
    return parse_body(open_note(note, public_key, name=name))


def open_note(note: str, public_key: Ed25519PublicKey, *, name: str | None = None) -> str:
    """The text of any signed note the trusted key signed (see `open_checkpoint`)."""
    body, sigs = _split_note(note)
    message = body.encode("utf-8")
    trusted = False
    for line_name, kid, sig in sigs:
        if name is not None and line_name != name:
            continue
        if kid != key_id(line_name, public_key):
            continue
        try:
            public_key.verify(sig, message)
        except InvalidSignature:
            raise CheckpointError("signature by the trusted key does not verify") from None
        trusted = True
    if not trusted:
        raise CheckpointError("not signed by the trusted key (unknown key id)")
    return body


def tenant_of(origin: str) -> str | None:
    """The tenant a Sluis origin names (its last path segment), or None if it names none.

    Only a claim: a verifier holds it against the log's own checkpoints.
    """
    _, slash, tenant = origin.rpartition("/")
    return tenant if slash and _TENANT.fullmatch(tenant) else None


def names_tenant(origin: str, tenant: str) -> bool:
    return tenant_of(origin) == tenant
