"""A real llama-server from ../shared (development and CI only): tests skip where it is absent."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx2 as httpx

LLAMA_CPP = Path(__file__).resolve().parents[2].parent / "shared" / "llama.cpp"


SERVER_BINARY = LLAMA_CPP / "bin" / "llama-server"


MAKE_GGUF = LLAMA_CPP / "make-gguf"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LlamaServer:
    """A llama-server process on a loopback port, its log in a file the tests read."""

    def __init__(self, gguf: Path, log: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [str(SERVER_BINARY), "-m", str(gguf), "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "-t", "1", *args]
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"llama-server exited: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError("llama-server did not start")

    def slots(self) -> list[dict]:
        return httpx.get(self.url + "/slots", timeout=5).json()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
