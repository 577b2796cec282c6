"""Memory benchmark: documents opened, completed and closed, over and over, must leave nothing.

Starts `python -m codellama_lsp` as a subprocess and speaks LSP to it over stdio. Each cycle
opens a new one-line document of about 50 KB, asks for an inline completion at its end, and
closes it (`--close-while-completing`: closes it right after asking, before the answer). The
server's resident memory (VmRSS) is read after the first 100 cycles and after the last; the goal
is that the growth between the two stays within 20 MB. Writes bench/RESULTS-closed-documents.md.

    python bench/closed_documents.py                      # 2,000 cycles, the shipped tiny model
    python bench/closed_documents.py --cycles 500 --close-while-completing
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parents[1]
WARMUP_CYCLES = 100
GOAL_MB = 20
LINE_BYTES = 50_000


class Server:
    """The server as a subprocess, spoken to in Content-Length frames."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codellama_lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            cwd=ROOT,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: BinaryIO = self.proc.stdin
        self._out: BinaryIO = self.proc.stdout
        self._ids = iter(range(1, 10**9))
        self.call("initialize", {"capabilities": {}, "initializationOptions": options})
        self.notify("initialized", {})

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        self._in.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._in.flush()

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any) -> int:
        msg_id = next(self._ids)
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id

    def reply(self, msg_id: int) -> Any:
        while True:
            length = 0
            while (line := self._out.readline()) != b"\r\n":
                if not line:
                    raise RuntimeError(f"the server ended (exit {self.proc.poll()})")
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            message = json.loads(self._out.read(length))
            if message.get("id") == msg_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message["result"]

    def call(self, method: str, params: Any) -> Any:
        return self.reply(self.request(method, params))

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def close(self) -> None:
        self.call("shutdown", None)
        self.notify("exit", None)
        self.proc.wait(30)


def one_line(number: int) -> str:
    """About LINE_BYTES of code on one line, different for every document."""
    parts, size, i = [], 0, 0
    while size < LINE_BYTES:
        part = f"value_{number}_{i} = compute({i}, 'doc {number}'); "
        parts.append(part)
        size += len(part)
        i += 1
    return "".join(parts)


def cycle(server: Server, number: int, close_first: bool) -> None:
    uri = f"file:///bench/closed/doc{number}.py"
    text = one_line(number)
    server.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
    )
    where = {
        "textDocument": {"uri": uri},
        "position": {"line": 0, "character": len(text)},
        "context": {"triggerKind": 1},
    }
    asked = server.request("textDocument/inlineCompletion", where)
    if not close_first:
        server.reply(asked)
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    if close_first:
        server.reply(asked)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--close-while-completing", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-closed-documents.md"))
    args = parser.parse_args()
    options = {"model": args.model, "maxNewTokens": args.max_new_tokens, "device": "cpu"}
    started = time.monotonic()
    server = Server(options)
    while not server.call("codellama/stats", {})["model"]:
        time.sleep(0.1)
    loaded = server.rss_mb()
    after_warmup = 0.0
    for number in range(args.cycles):
        cycle(server, number, args.close_while_completing)
        if number + 1 == WARMUP_CYCLES:
            after_warmup = server.rss_mb()
        if (number + 1) % 100 == 0:
            print(f"{number + 1} cycles: RSS {server.rss_mb():.1f} MB", file=sys.stderr, flush=True)
    after_all = server.rss_mb()
    time.sleep(0.5)  # the last document's cache is dropped on the worker thread, between jobs
    stats = server.call("codellama/stats", {})
    server.close()
    seconds = time.monotonic() - started
    growth = after_all - after_warmup
    mode = "closed while completing" if args.close_while_completing else "closed after the answer"
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    lines = [
        "# Memory after closed documents",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, threads: {threads}",
        f"- model: {args.model} on cpu, maxNewTokens {args.max_new_tokens}",
        f"- cycles: {args.cycles} one-line documents of {LINE_BYTES // 1000} KB, each opened, "
        f"completed (inline, invoked) and {mode}",
        f"- command: `python bench/closed_documents.py {' '.join(sys.argv[1:])}` "
        f"({seconds:.0f} s in all)",
        "",
        "| figure | value |",
        "| --- | ---: |",
        f"| RSS with the model loaded, MB | {loaded:.1f} |",
        f"| RSS after {WARMUP_CYCLES} cycles, MB | {after_warmup:.1f} |",
        f"| RSS after {args.cycles} cycles, MB | {after_all:.1f} |",
        f"| growth from cycle {WARMUP_CYCLES} to {args.cycles}, MB (goal: within {GOAL_MB}) "
        f"| {growth:+.1f} ({'met' if growth <= GOAL_MB else '**not met**'}) |",
        f"| documents still cached by the worker at the end | {stats['cachedDocuments']} |",
        f"| completions: completed / cancelled / superseded | {stats['completed']} / "
        f"{stats['cancelled']} / {stats['superseded']} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0 if growth <= GOAL_MB else 1


if __name__ == "__main__":
    sys.exit(main())
