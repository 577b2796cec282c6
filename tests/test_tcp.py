"""`--tcp` over real loopback sockets: one editor at a time, nothing for web pages or scans."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codellama_lsp.lsp.tcp import INITIALIZE_TIMEOUT_S

TIMEOUT_S = 60
KNOWN_URI = "file:///work/secret.py"


class Connection:
    """One client socket speaking Content-Length framed JSON-RPC."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.stream = self.socket.makefile("rb")
        self.next_id = 1

    def send(self, message: Any) -> None:
        body = json.dumps(message).encode()
        self.socket.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the server closed the connection."""
        length = None
        try:
            while (line := self.stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
        except ConnectionResetError:
            return None
        if not line or length is None:
            return None
        return json.loads(self.stream.read(length))

    def call(self, method: str, params: Any) -> dict[str, Any]:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        while (message := self.receive()) is not None:
            if message.get("id") == msg_id and "method" not in message:
                return message
        raise AssertionError(f"the connection closed before the reply to {method}")

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        self.stream.close()
        self.socket.close()


def initialize(connection: Connection) -> dict[str, Any]:
    params = {"capabilities": {}, "initializationOptions": {"model": "tiny", "maxNewTokens": 4}}
    answer = connection.call("initialize", params)
    connection.notify("initialized", {})
    return answer


def wait_ready(connection: Connection) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not connection.call("codellama/stats", {})["result"]["model"]:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.1)


@contextlib.contextmanager
def running_server(
    tmp_path: Path, preexec_fn: Callable[[], None] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The real server on `--tcp 127.0.0.1:0`, and the port it says it got."""
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "codellama_lsp", "--tcp", "127.0.0.1:0", "--log-file", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        preexec_fn=preexec_fn,
    )
    assert server.stderr is not None
    line = server.stderr.readline()
    assert line.startswith("codellama-lsp: listening on 127.0.0.1:"), line
    threading.Thread(target=server.stderr.read, daemon=True).start()
    try:
        yield server, int(line.rsplit(":", 1)[1])
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(TIMEOUT_S)


@pytest.fixture
def tcp_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    with running_server(tmp_path) as started:
        yield started


@pytest.mark.parametrize(
    "spec", ["0.0.0.0:2087", "192.0.2.1:2087", "example.com:2087", "[::]:2087", "127.0.0.1:x"]
)
def test_tcp_refuses_what_is_not_a_loopback_address(spec):
    done = subprocess.run(
        [sys.executable, "-m", "codellama_lsp", "--tcp", spec],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("codellama-lsp: error: --tcp"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_one_editor_at_a_time_and_nothing_for_scans_or_web_pages(tcp_server):
    server, port = tcp_server
    for _ in range(3):  # a port scan: connect, close
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S).close()

    # What a web page can send to a loopback port: a POST with a text/plain body.
    page = Connection(port)
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
    ).encode()
    page.socket.sendall(
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    assert page.receive() is None  # closed unanswered
    page.close()
    assert server.poll() is None

    editor = Connection(port)
    assert "inlineCompletionProvider" in initialize(editor)["result"]["capabilities"]
    editor.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": KNOWN_URI, "languageId": "python", "version": 1, "text": "k"}},
    )
    wait_ready(editor)

    # A second connection while the editor is connected is closed, and sees nothing of it.
    other = Connection(port)
    where = {"textDocument": {"uri": KNOWN_URI}, "position": {"line": 0, "character": 1}}
    with contextlib.suppress(OSError):  # it may be closed already
        other.send({"jsonrpc": "2.0", "id": 7, "method": "codellama/prompt", "params": where})
    assert other.receive() is None
    other.close()

    # The editor is still served, with the stdio reader's limits: a length no editor sends is
    # skipped as garbage, and the next frame is read.
    assert editor.call("codellama/prompt", where)["result"]["text"].endswith("k")
    editor.socket.sendall(b"Content-Length: 2000000000\r\n\r\n{}\r\n")
    assert "result" in editor.call("codellama/stats", {})
    assert "result" in editor.call("shutdown", None)
    editor.notify("exit", None)
    assert server.wait(TIMEOUT_S) == 0


def test_the_end_of_the_editors_connection_ends_the_server(tcp_server):
    server, port = tcp_server
    editor = Connection(port)
    initialize(editor)
    editor.close()
    assert server.wait(TIMEOUT_S) == 1


def test_silent_connections_are_closed_and_the_editor_behind_them_is_served(tcp_server):
    """A connection that sends nothing ends after the timeout, and those queued behind it that
    sent nothing either go with it, rather than each holding the one slot for a turn."""
    server, port = tcp_server
    started = time.monotonic()
    silent = [Connection(port) for _ in range(5)]
    editor = Connection(port)
    assert "capabilities" in initialize(editor)["result"]
    assert time.monotonic() - started < 3 * INITIALIZE_TIMEOUT_S  # not a full timeout each
    for connection in silent:
        assert connection.receive() is None  # closed by the server
        connection.close()
    wait_ready(editor)
    assert "result" in editor.call("shutdown", None)
    editor.notify("exit", None)
    assert server.wait(TIMEOUT_S) == 0


DESCRIPTORS = 256


def few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))


def test_out_of_descriptors_the_server_keeps_accepting(tmp_path):
    """More waiting connections than the server has descriptors (EMFILE on accept) leave it
    accepting once they end, rather than never again."""
    with running_server(tmp_path, few_descriptors) as (server, port):
        crowd = [
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
            for _ in range(DESCRIPTORS + 50)
        ]
        time.sleep(1)  # for the server to accept what it can, and run out of descriptors
        for connection in crowd:
            connection.close()
        assert server.poll() is None
        editor = Connection(port)
        assert "capabilities" in initialize(editor)["result"]
        editor.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": KNOWN_URI, "languageId": "python", "version": 1, "text": "k"}},
        )
        wait_ready(editor)
        where = {"textDocument": {"uri": KNOWN_URI}, "position": {"line": 0, "character": 1}}
        assert editor.call("codellama/prompt", where)["result"]["text"].endswith("k")
        assert "result" in editor.call("shutdown", None)
        editor.notify("exit", None)
        assert server.wait(TIMEOUT_S) == 0
