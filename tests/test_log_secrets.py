"""No secret reaches the log, even at debug level, where pygls logs every message whole."""

from __future__ import annotations

import asyncio

from lsprotocol import types
from support.lsp_session import session, stats

FIRST_KEY = "sk-secret-123"
SECOND_KEY = "sk-other-456"


async def test_the_engine_api_key_is_never_logged(tmp_path):
    log = tmp_path / "server.log"
    options = {"engineApiKey": FIRST_KEY, "model": "tiny", "maxNewTokens": 4}
    args = ("--log-level", "debug", "--log-file", str(log))
    async with session(options, wait_ready=False, args=args) as client:
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"codellama": {"engineApiKey": SECOND_KEY, "maxNewTokens": 5}}
            )
        )
        await asyncio.wait_for(stats(client), 60)
        await asyncio.wait_for(client.shutdown_async(None), 60)
        client.exit(None)
        assert client._server is not None
        await asyncio.wait_for(client._server.wait(), 60)
    logged = log.read_text(encoding="utf-8")
    assert "engineApiKey" in logged  # the messages were logged, the secrets blanked out
    assert "<redacted>" in logged
    assert FIRST_KEY not in logged
    assert SECOND_KEY not in logged
