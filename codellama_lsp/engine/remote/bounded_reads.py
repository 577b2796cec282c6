"""A server's answer, read within bounds as it comes: nothing says a server's answer ends.

A JSON answer is refused past BODY_LIMIT, a line of an event stream past LINE_LIMIT, and a body
in any encoding but identity (the only one asked for). `where` is the URL read, for the message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import httpx2 as httpx

from codellama_lsp.engine.interface import EngineUnavailable

BODY_LIMIT = 2**20
"""The most a JSON answer (or an error's body) may hold: the largest real one is a few KB."""
LINE_LIMIT = 2**20
"""The most a line of an event stream may hold: a real one holds a token or a few."""


async def read_body(response: httpx.Response, where: str) -> bytes:
    """The whole body, refused past BODY_LIMIT."""
    check_encoding(response, where)
    data = bytearray()
    async with aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            data += chunk
            if len(data) > BODY_LIMIT:
                raise EngineUnavailable(f"{where} answered more than {BODY_LIMIT // 2**20} MiB")
    return bytes(data)


async def read_lines(response: httpx.Response, where: str) -> AsyncGenerator[str, None]:
    """The body's lines, each refused past LINE_LIMIT (httpx's `aiter_lines` keeps a line
    that never ends whole). A CR LF split between chunks makes an empty line more, which
    an event stream ignores."""
    check_encoding(response, where)
    partial = bytearray()
    async with aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            partial += chunk
            if b"\n" in chunk or b"\r" in chunk:
                lines = partial.splitlines(keepends=True)
                ended = lines[-1].endswith((b"\n", b"\r"))
                partial = bytearray() if ended else lines.pop()
                for line in lines:
                    _check_line(len(line.rstrip(b"\r\n")), where)
                    yield line.rstrip(b"\r\n").decode("utf-8", "replace")
            _check_line(len(partial), where)
    if partial:
        yield partial.decode("utf-8", "replace")


def check_encoding(response: httpx.Response, where: str) -> None:
    """Only `identity` is asked for: a packed body is not unpacked (a few kilobytes of gzip
    can unpack to gigabytes before a limit on what came in would notice)."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        raise EngineUnavailable(
            f"{where} answered in {encoding[:40]}, not the identity encoding asked for"
        )


def _check_line(length: int, where: str) -> None:
    if length > LINE_LIMIT:
        raise EngineUnavailable(f"{where} streamed a line of more than {LINE_LIMIT // 2**20} MiB")
