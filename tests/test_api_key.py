"""The environment's API key goes only to the server the command line names.

A workspace's settings can name another `engineUrl` (VS Code reads `.vscode/settings.json`, Neovim
a project's `.nvim.lua`): the key from `CODELLAMA_LSP_API_KEY` must never reach it. The real server
runs as a subprocess; two small HTTP servers on loopback record the `Authorization` header of
every request they get (and answer 503, so the server keeps trying now and then).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from lsprotocol import types
from support.lsp_session import session

from codellama_lsp.settings import API_KEY_ENV, Settings, parse_settings

ENV_KEY = "env-secret-7391"


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.authorizations: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        body = b'{"error": {"message": "not a real server"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    pair = (Recorder(), Recorder())
    for recorder in pair:
        threading.Thread(target=recorder.serve_forever, daemon=True).start()
    yield pair
    for recorder in pair:
        recorder.shutdown()
        recorder.server_close()


async def asked(recorder: Recorder, before: int) -> list[str]:
    """The Authorization headers of the requests after the first `before` ones."""
    for _ in range(600):
        if len(recorder.authorizations) > before:
            return recorder.authorizations[before:]
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing reached {recorder.url}")


async def test_a_workspace_url_never_gets_the_environment_key(
    recorders, tiny_model_dir, monkeypatch
):
    command_line, workspace = recorders
    monkeypatch.setenv(API_KEY_ENV, ENV_KEY)
    args = ("--engine", "llama.cpp", "--engine-url", command_line.url)
    options = {"model": str(tiny_model_dir), "engineUrl": workspace.url}
    async with session(options, args=args, wait_ready=False) as client:
        assert await asked(workspace, 0) == [""]

        def point_at(settings: dict[str, str]) -> None:
            client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings={"codellama": settings})
            )

        point_at({"engineUrl": command_line.url + "/"})  # back to the command line's server
        assert await asked(command_line, 0) == [f"Bearer {ENV_KEY}"]

        point_at({"engineUrl": workspace.url, "engineApiKey": "its-own"})
        assert await asked(workspace, 1) == ["Bearer its-own"]
    assert all(ENV_KEY not in header for header in workspace.authorizations)


def test_the_key_follows_the_command_lines_url():
    origin = Settings(engine_url="http://a:1", engine_api_key="env")
    elsewhere, _ = parse_settings({"engineUrl": "http://b:2"}, origin)
    assert elsewhere.engine_api_key == ""
    unrelated, _ = parse_settings({"maxNewTokens": 9}, elsewhere, origin)
    assert unrelated.engine_api_key == ""  # still at b
    back, _ = parse_settings({"engineUrl": "http://A:1/v1/"}, elsewhere, origin)
    assert back.engine_api_key == "env"
    own, _ = parse_settings({"engineUrl": "http://b:2", "engineApiKey": "own"}, origin)
    assert own.engine_api_key == "own"
    moved, _ = parse_settings({"engineUrl": "http://c:3"}, own, origin)
    assert moved.engine_api_key == ""  # b's key is not c's
