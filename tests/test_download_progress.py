"""A first download's bytes reach the callback once per percent, and nothing is drawn."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig
from support.lsp_session import capabilities, ready

from codellama_lsp.checkpoint.download import describe, percentage, reporting_tqdm


def test_the_byte_bar_that_moves_is_reported_once_per_percent(capsys):
    reports: list[tuple[int, int]] = []
    bar_class = reporting_tqdm(lambda done, total: reports.append((done, total)))
    # As huggingface_hub's snapshot_download makes them: received bytes, written bytes, files.
    received = bar_class(total=0, initial=0, unit="B", desc="Downloading bytes")
    written = bar_class(total=0, initial=0, unit="B", desc="Reconstructing")
    files = bar_class(range(2), total=2, desc="Fetching 2 files")
    for size in (1000, 9000):  # each file adds its size as its download starts
        written.total += size
        received.total += size
    for _ in range(100):
        written.update(100)
    files.update(2)
    received.update(0)
    assert reports[-1] == (10_000, 10_000)
    assert [done * 100 // total for done, total in reports] == list(range(1, 101))
    assert capsys.readouterr() == ("", "")


def test_descriptions():
    assert describe(1_234_000_000, 13_500_000_000) == "1.2 GB of 13.5 GB (9%)"
    assert describe(512, 2048) == "512 B of 2.0 kB (25%)"
    assert percentage(5, 0) == 0


# -- a first download from a hub on this machine ------------------------------------------------
# The model hub is out of reach here, so a small HTTP server speaks the part of its API that
# huggingface_hub's `snapshot_download` uses, serving a tiny model's folder; the client is real.


class FakeHub(http.server.BaseHTTPRequestHandler):
    folder: Path
    commit = "c0de" * 10

    def log_message(self, *args: object) -> None:
        pass

    def files(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.folder.iterdir())}

    def send_json(self, value: object) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_file(self, with_body: bool) -> None:
        data = self.files().get(self.path.rsplit("/", 1)[-1])
        if data is None or "/resolve/" not in self.path:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.send_file(with_body=False)

    def do_GET(self) -> None:
        if "/tree/" in self.path:
            files = self.files()
            self.send_json(
                [
                    {"type": "file", "path": name, "size": len(data), "oid": "0" * 40}
                    for name, data in files.items()
                ]
            )
        elif self.path.startswith("/api/models/"):
            siblings = [{"rfilename": name} for name in self.files()]
            self.send_json({"id": HUB_ID, "sha": self.commit, "siblings": siblings})
        else:
            self.send_file(with_body=True)


HUB_ID = "example/tiny-infill"


@pytest.fixture
def hub_env(tiny_model_dir, tmp_path):
    """Environment variables that point huggingface_hub at a hub serving the tiny model."""
    handler = type("Hub", (FakeHub,), {"folder": tiny_model_dir})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    server.shutdown()
    server.server_close()


def test_complete_draws_the_download_on_stderr(hub_env, tmp_path):
    source = tmp_path / "a.py"
    source.write_text("def add(a, b):\n    return \n", encoding="utf-8")
    command = ["complete", f"{source}:2:12", "--model", HUB_ID, "--max-new-tokens", "4"]
    done = subprocess.run(
        [sys.executable, "-m", "codellama_lsp", *command],
        capture_output=True,
        text=True,
        timeout=300,
        env=hub_env,
    )
    assert done.returncode == 0, done.stderr
    # Redrawn in place with "\r", which text mode reads as line ends.
    bars = [line for line in done.stderr.splitlines() if line.startswith(f"{HUB_ID}: [")]
    bar = bars[-1]
    assert bar.startswith(f"{HUB_ID}: [{'#' * 30}] ") and bar.endswith("(100%)"), done.stderr
    assert " kB of " in bar


async def test_the_download_is_reported_as_work_done_progress(hub_env):
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "codellama_lsp"], server_env=hub_env
    )
    client = await config.start()
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities("utf-16"), initialization_options={"model": HUB_ID}
            )
        )
        await ready(client)
        progress = [report for reports in client.progress_reports.values() for report in reports]
        begin, *reports, end = progress
        assert isinstance(begin, types.WorkDoneProgressBegin) and begin.percentage == 0
        assert isinstance(end, types.WorkDoneProgressEnd)
        assert reports and all(isinstance(r, types.WorkDoneProgressReport) for r in reports)
        assert reports[-1].percentage == 100
        assert reports[-1].message.startswith(f"Downloading {HUB_ID}: ")
        assert " kB of " in reports[-1].message
        await client.shutdown_session()
    finally:
        await client.stop()
