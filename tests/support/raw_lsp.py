"""The server spoken to in raw bytes, for what a well-behaved client never sends."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

REPLY_TIMEOUT_S = 60


KNOWN_URI = "file:///work/known.py"


class RawServer:
    """The server as a subprocess, spoken to in raw bytes; replies parsed on a reader thread."""

    def __init__(self, args: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codellama_lsp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.frames_sent = 0
        self.messages: list[dict[str, Any]] = []
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ids = iter(range(1_000_000, 10**9))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                assert length is not None, "a reply without Content-Length"
                self._inbox.put(json.loads(out.read(length)))
        finally:
            self._inbox.put(None)

    # -- sending ------------------------------------------------------------------------

    def write(self, data: bytes, frames: int = 1) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        self.frames_sent += frames

    def send(self, message: Any) -> None:
        self.write(frame(message))

    def request(self, method: str, params: Any) -> int:
        msg_id = next(self._ids)
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    # -- receiving ----------------------------------------------------------------------

    def pump(self, timeout: float) -> bool:
        """Move one message from the reader into `messages`; False on timeout."""
        try:
            message = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return False
        assert message is not None, f"the server closed stdout (exit {self.proc.poll()})"
        self.messages.append(message)
        return True

    def reply(self, msg_id: int, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if message.get("id") == msg_id and "method" not in message:
                    return message
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to request {msg_id}"
            self.pump(left)

    def call(self, method: str, params: Any, timeout: float = REPLY_TIMEOUT_S) -> Any:
        answer = self.reply(self.request(method, params), timeout)
        assert "error" not in answer, answer
        return answer["result"]

    def settle(self, quiet_s: float = 0.3) -> None:
        while self.pump(quiet_s):
            pass

    # -- lifecycle ----------------------------------------------------------------------

    def initialize(self, options: dict[str, Any]) -> None:
        self.call("initialize", {"capabilities": {}, "initializationOptions": options})
        self.notify("initialized", {})

    def wait_ready(self) -> None:
        for _ in range(1200):
            if self.call("codellama/stats", {})["model"]:
                return
            time.sleep(0.1)
        raise AssertionError("the model did not load")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def frame(message: Any) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def at(uri: str, line: int, character: int) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


def open_params(uri: str, text: str, version: Any = 1) -> dict[str, Any]:
    return {"textDocument": {"uri": uri, "languageId": "python", "version": version, "text": text}}
