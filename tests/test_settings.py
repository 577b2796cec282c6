"""Settings: one definition, from which the parser, the command line, the VS Code extension's
settings and the README table are derived; bad values fall back one by one; code execution is
for the command line only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.raw_lsp import KNOWN_URI, RawServer, at, frame, open_params
from support.script_module import load_script

from codellama_lsp.cli import build_parser, settings_from
from codellama_lsp.settings import Settings, parse_settings, setting_specs

ROOT = Path(__file__).resolve().parents[1]
reference = load_script(ROOT / "tools" / "settings_reference.py")


def test_every_setting_is_fully_defined():
    specs = setting_specs()
    assert [spec.name for spec in specs] == list(Settings.__dataclass_fields__)
    for spec in specs:
        assert spec.help, f"{spec.name}: no docstring under the field"
        assert "  " not in spec.help
        if spec.kind in (int, float):
            assert spec.minimum <= spec.default <= spec.maximum, spec.name
        assert spec.convert(spec.default) == spec.default, spec.name


def test_a_completion_ends_well_inside_the_editors_request_timeouts():
    """Emacs's eglot gives up after `jsonrpc-default-request-timeout`, 10 s: the default budget
    leaves half of it for the debounce and a request queued behind another."""
    emacs_timeout_ms = 10_000
    assert Settings().time_budget_ms <= emacs_timeout_ms // 2


def test_the_readme_and_the_vscode_settings_are_up_to_date(capsys):
    assert reference.main(["--check"]) == 0, capsys.readouterr().err


def test_the_vscode_settings_match_the_definitions():
    package = json.loads(reference.PACKAGE_JSON.read_text(encoding="utf-8"))
    properties = package["contributes"]["configuration"]["properties"]
    expected = {"codellama.serverPath", "codellama.serverArgs"}
    for spec in setting_specs():
        key = f"codellama.{spec.key}"
        if spec.command_line_only:
            assert key not in properties, f"{key} must not be settable from an editor"
            continue
        expected.add(key)
        prop = properties[key]
        assert prop["default"] == spec.default, key
        assert prop["markdownDescription"] == spec.help, key
        assert (prop.get("minimum"), prop.get("maximum")) == (spec.minimum, spec.maximum), key
        assert prop.get("enum", []) == list(spec.choices), key
    assert set(properties) == expected
    for launch in ("codellama.serverPath", "codellama.serverArgs"):
        assert properties[launch]["scope"] == "machine", launch


def readme_rows() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split(reference.TABLE_BEGIN)[1].split(reference.TABLE_END)[0]
    rows = [line.strip("|").split(" | ") for line in table.strip().splitlines()[2:]]
    return {cells[1].strip(" `"): [cell.strip() for cell in cells] for cells in rows}


def test_the_readme_table_agrees_with_the_definitions():
    rows = readme_rows()
    assert set(rows) == {"(none)" if spec.secret else spec.flag for spec in setting_specs()}
    for spec in setting_specs():
        name, _, default, meaning = rows["(none)" if spec.secret else spec.flag]
        assert name == ("(command line only)" if spec.command_line_only else f"`{spec.key}`")
        assert default == reference.shown_default(spec)
        assert meaning.replace("\\|", "|") == spec.help


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, 10**400, "2048", True, 2048.5])
def test_a_bad_number_falls_back_on_its_own(bad):
    settings, problems = parse_settings({"contextTokens": bad, "order": "psm", "temperature": 0.5})
    assert settings.context_tokens == 2048
    assert (settings.order, settings.temperature) == ("psm", 0.5)
    assert len(problems) == 1 and "contextTokens" in problems[0] and "using 2048" in problems[0]


def test_each_bad_value_gets_its_own_message():
    settings, problems = parse_settings(
        {"temperature": math.nan, "maxNewTokens": -math.inf, "device": "gpu", "debounceMs": 7}
    )
    assert (settings.temperature, settings.max_new_tokens, settings.device) == (0.0, 128, "auto")
    assert settings.debounce_ms == 7
    assert len(problems) == 3


def test_trust_remote_code_is_refused_from_an_editor():
    trusted = Settings(trust_remote_code=True)
    for base in (Settings(), trusted):
        settings, problems = parse_settings({"trustRemoteCode": not base.trust_remote_code}, base)
        assert settings.trust_remote_code == base.trust_remote_code
        assert len(problems) == 1 and "--trust-remote-code" in problems[0]


def test_flags_are_derived_from_the_definitions():
    parser = build_parser()
    assert settings_from(parser.parse_args([])) == Settings()
    args = parser.parse_args(
        [
            "--temperature", "0.5", "--token-healing", "off", "--languages", '{"md": false}',
            "complete", "f.py:1:1", "--context-tokens", "512", "--order", "psm",
        ]
    )  # fmt: skip
    settings = settings_from(args)
    assert (settings.context_tokens, settings.order, settings.temperature) == (512, "psm", 0.5)
    assert (settings.token_healing, settings.languages) == (False, {"md": False})
    assert settings_from(parser.parse_args(["--trust-remote-code", "on"])).trust_remote_code
    help_text = parser.format_help()
    for spec in setting_specs():
        assert (spec.flag in help_text) != spec.secret, spec.flag


def test_a_secret_setting_is_never_echoed():
    settings, problems = parse_settings({"engineApiKey": ["sk-do-not-echo"]})
    assert settings.engine_api_key == ""
    assert len(problems) == 1 and "sk-do-not-echo" not in problems[0]
    assert "sk-" not in repr(parse_settings({"engineApiKey": "sk-hidden"})[0])


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--context-tokens", "10", "is not between 64 and 100000"),
        ("--context-tokens", "inf", "not a finite number"),
        ("--temperature", "nan", "not a finite number"),
        ("--device", "gpu", "does not match"),
        ("--token-healing", "yes", "is not on or off"),
        ("--trigger-characters", "[1]", "not a list of strings"),
    ],
)
def test_bad_flags_are_one_usage_error(tmp_path, flag, value, says):
    source = tmp_path / "a.py"
    source.write_text("x = 1\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "codellama_lsp", "prompt", f"{source}:1:1", flag, value],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"argument {flag}: " in last and says in last, last


def warnings(server: RawServer) -> list[str]:
    return [
        message["params"]["message"]
        for message in server.messages
        if message.get("method") == "window/showMessage"
    ]


@pytest.fixture
def raw_server(tiny_model_dir: Path):
    server = RawServer()
    yield server
    server.close()


def test_infinity_and_nan_over_lsp_fall_back_one_by_one(raw_server, tiny_model_dir):
    """Raw JSON: `1e400` is valid JSON that Python reads as infinity; NaN as pygls reads it."""
    model = json.dumps(str(tiny_model_dir))
    raw_server.write(
        frame(
            b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {},'
            b' "initializationOptions": {"model": %s, "contextTokens": 1e400, "order": "psm",'
            b' "maxNewTokens": 4}}}' % model.encode()
        )
    )
    assert "result" in raw_server.reply(1)
    raw_server.notify("initialized", {})
    raw_server.wait_ready()
    raw_server.notify(
        "textDocument/didOpen", open_params(KNOWN_URI, "def add(a, b):\n    return a")
    )
    assert raw_server.call("codellama/prompt", at(KNOWN_URI, 1, 4))["order"] == "psm"
    shown = warnings(raw_server)
    assert len(shown) == 1 and "contextTokens" in shown[0] and "using 2048" in shown[0], shown

    raw_server.write(
        frame(
            b'{"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": '
            b'{"settings": {"codellama": {"temperature": NaN, "contextTokens": -1e400,'
            b' "order": "spm"}}}}'
        )
    )
    assert raw_server.call("codellama/prompt", at(KNOWN_URI, 1, 4))["order"] == "spm"
    raw_server.settle()
    shown = warnings(raw_server)[1:]
    assert len(shown) == 2, shown
    assert any("temperature" in text for text in shown)
    assert any("contextTokens" in text for text in shown)


def test_trust_remote_code_comes_only_from_the_command_line(tiny_model_dir):
    from_editor = RawServer()
    try:
        from_editor.initialize({"model": str(tiny_model_dir), "trustRemoteCode": True})
        from_editor.wait_ready()
        from_editor.notify(
            "workspace/didChangeConfiguration", {"settings": {"trustRemoteCode": True}}
        )
        from_editor.call("codellama/stats", {})
        from_editor.settle()
        shown = warnings(from_editor)
        assert len(shown) == 2, shown
        assert all("'trustRemoteCode'" in t and "--trust-remote-code on" in t for t in shown)
    finally:
        from_editor.close()

    from_command_line = RawServer(("--trust-remote-code", "on"))
    try:
        from_command_line.initialize({"model": str(tiny_model_dir)})
        from_command_line.wait_ready()
        from_command_line.settle()
        shown = warnings(from_command_line)
        assert len(shown) == 1 and "--trust-remote-code is on" in shown[0], shown
    finally:
        from_command_line.close()
