"""The messages between the gateway and its source worker processes (`source_process`,
`source_worker`): length-prefixed JSON frames over a socket pair.

JSON (orjson), not pickle: a worker parses what hostile sources send, and unpickling lets
the sender run code in the receiver, so a worker subverted by a parser bug would own the
gateway. What crosses is data only: connector settings and credentials one way, minimised
pages (the door's output, never a raw record), counts and error kinds the other.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from typing import Any, Final

import orjson

from connectors.base import MinimisedPage

#: The largest frame either side accepts: far above any minimised page (a source's body is
#: capped before it is parsed), low enough that a garbled length cannot exhaust memory.
MAX_FRAME_BYTES: Final = 256 * 1024 * 1024
_LENGTH: Final = struct.Struct(">I")


class FrameError(Exception):
    """The other side sent something that is not a frame of this protocol."""


def encode(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"a frame of {len(body)} bytes is over the limit")
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("the stream ended inside a frame header") from None
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"a frame of {size} bytes is over the limit")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise FrameError("the stream ended inside a frame") from None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FrameError("a frame is not JSON") from None
    if type(message) is not dict:
        raise FrameError("a frame is not a JSON object")
    return message


def page_message(page: MinimisedPage) -> dict[str, Any]:
    return {
        "subjects": page.subjects,
        "rejected": page.rejected,
        "dropped": dict(page.dropped),
        "fetched": page.fetched,
        "next_cursor": page.next_cursor,
        "watermark": page.watermark,
        "unchanged": page.unchanged,
    }


def page_of(message: dict[str, Any]) -> MinimisedPage:
    """A page back from its message; a message of another shape is a FrameError."""
    try:
        return MinimisedPage(
            subjects=list(message["subjects"]),
            rejected=[(int(i), str(reason)) for i, reason in message["rejected"]],
            dropped=Counter({str(k): int(v) for k, v in message["dropped"].items()}),
            fetched=int(message["fetched"]),
            next_cursor=_text_or_none(message["next_cursor"]),
            watermark=_text_or_none(message["watermark"]),
            unchanged=bool(message["unchanged"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise FrameError("a page message is malformed") from None


def _text_or_none(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    raise ValueError("not text")
