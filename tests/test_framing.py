"""FrameReader on its own: what pygls reads from it, for well-formed and broken input.

The server's side of the same (frames over a real stdin pipe) is in test_robustness.py.
"""

from __future__ import annotations

import io
import time

import pytest

from codellama_lsp.lsp.framing import LINE_CHUNK, MAX_CONTENT_LENGTH, FrameReader


def bodies(data: bytes) -> list[bytes]:
    """What pygls would read: each frame must come as its one header, a blank line, the body."""
    reader = FrameReader(io.BytesIO(data))
    found = []
    while header := reader.readline():
        assert header.startswith(b"Content-Length: ") and header.endswith(b"\r\n")
        assert reader.readline() == b"\r\n"
        length = int(header[len(b"Content-Length: ") : -2])
        body = reader.read(length)
        assert len(body) == length > 0
        found.append(body)
    return found


def framed(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_well_formed_frames_pass_unchanged():
    frames = [b'{"a": 1}', b"x" * (3 << 20), b"{}"]
    assert bodies(b"".join(framed(body) for body in frames)) == frames


@pytest.mark.parametrize(
    "header",
    [
        b"content-length: 2\r\n",
        b"CONTENT-LENGTH:2\n",
        b"Content-Length :  2 \r\n",
        b"Content-Type: application/vscode-jsonrpc\r\nContent-Length: 2\r\n",
        b"Content-Length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n",
    ],
)
def test_headers_in_any_case_spacing_and_order(header):
    assert bodies(header + b"\r\n{}" + framed(b"[]")) == [b"{}", b"[]"]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\r\n\n   \r\n",  # blank lines between frames
        b"not a header\r\n\r\n{}\r\n",
        b'method": "x"}',  # the rest of a too-short frame, no newline: joins the next header
        b"\x00\xff" * LINE_CHUNK,  # a line longer than one read, the header at its end
        b"Content-Length: abc\r\n\r\n{}\r\n",
        b"Content-Length: -5\r\n\r\n{}\r\n",
        b"Content-Length: 0\r\n\r\n",
        b"Content-Length 12\r\n\r\n{}\r\n",
        b"Content-Length: %d\r\n\r\n{}\r\n" % (MAX_CONTENT_LENGTH + 1),
        b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n{}\r\n",
        b"Content-Length: 2\r\nnot a header\r\n\r\n{}\r\n",  # a broken frame loses its length
    ],
)
def test_garbage_is_skipped_up_to_the_next_frame(garbage):
    assert bodies(framed(b"[1]") + garbage + framed(b"[2]")) == [b"[1]", b"[2]"]


def test_a_frame_cut_short_by_the_end_of_input_ends_it():
    assert bodies(framed(b"[1]") + b"Content-Length: 10\r\n\r\n{}") == [b"[1]"]
    assert bodies(b"Content-Length: 10\r\n") == []
    assert bodies(b"garbage without a newline") == []


@pytest.mark.parametrize(
    "start",
    [
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1:2087\r\nContent-Type: text/plain\r\n",
        b"GET /socket HTTP/1.1\r\nUpgrade: websocket\r\n",
        b"\r\nPRI * HTTP/2.0\r\n",
    ],
)
def test_a_stream_that_starts_like_http_ends_unread(start):
    """What a web page can send to a loopback port is not an editor: nothing of it is read."""
    assert bodies(start + framed(b'{"a": 1}') + framed(b"{}")) == []


def test_http_later_in_a_stream_is_garbage_like_any_other():
    assert bodies(framed(b"{}") + b"POST / HTTP/1.1\r\n" + framed(b"[]")) == [b"{}", b"[]"]


def test_lines_of_many_content_length_names_are_skipped_in_linear_time():
    """A line naming Content-Length again and again, the header not at its end: each name was
    tried to the end of the line, seconds of CPU (the GIL held) for each 64 KiB."""
    line = b"content-length:" * ((LINE_CHUNK - 4) // 15) + b" x\r\n"  # one read
    started = time.monotonic()
    assert bodies(line * 16 + framed(b"{}")) == [b"{}"]
    assert time.monotonic() - started < 10  # not a minute
