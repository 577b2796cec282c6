"""VS Code (code-server in headless Chromium) with the extension from editors/vscode, end to end.

`.ci/editors/vscode.sh` installs code-server, Chromium, playwright-core and the built .vsix; this
test starts code-server on a free port with a fresh profile whose settings point the extension at
this environment's `codellama-lsp` and the shipped `tiny` model, opens a Python file, asks for an
inline suggestion at the end of an indented blank line, checks that ghost text shows, accepts it
with Tab, saves, and checks the file on disk: prefix + accepted text + suffix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CI_CACHE = Path(
    os.environ.get("CODELLAMA_LSP_CI_CACHE") or Path.home() / ".cache" / "codellama-lsp-ci"
)
TOOLS = CI_CACHE / "vscode.json"  # written by .ci/editors/vscode.sh

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\n\nprint(add(1, 2))\n"
FILE_NAME = "sample.py"
CURSOR = (2, 5)  # line and column, from 1, at the end of PREFIX
TRIGGER_KEY = "ctrl+alt+shift+i"  # bound to editor.action.inlineSuggest.trigger below

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The browser side, run by Node with playwright-core from the CI cache (NODE_PATH). Every wait is
# bounded and names what it was waiting for; on failure it leaves a screenshot.
DRIVER = r"""
const fs = require("fs");
const { chromium } = require("playwright-core");
const config = JSON.parse(process.env.DRIVER_CONFIG);
const started = Date.now();
const log = (...parts) =>
  console.error(`[driver ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...parts);

async function waitFor(page, selector, what, timeout) {
  try {
    return await page.waitForSelector(selector, { state: "visible", timeout });
  } catch (error) {
    throw new Error(`timed out after ${timeout / 1000} s waiting for ${what} (${selector})`);
  }
}

const GHOST = [
  ".monaco-editor .ghost-text-decoration",
  ".monaco-editor .ghost-text-decoration-preview",
  ".monaco-editor .ghost-text",
].join(", ");

async function goToCursor(page) {
  const where = `Ln ${config.line}, Col ${config.column}`;
  await page.keyboard.press("Control+G");
  const input = await waitFor(page, ".quick-input-widget input", "Go to Line", 20000);
  await input.fill(`:${config.line}:${config.column}`);
  await page.keyboard.press("Enter");
  try {
    await page.waitForSelector(".quick-input-widget", { state: "hidden", timeout: 10000 });
  } catch {
    throw new Error("Go to Line stayed open");
  }
  await waitFor(page, `.statusbar-item:has-text("${where}")`, `the cursor at ${where}`, 10000);
}

async function main(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (error) => log("page error:", error.message));
  try {
    log("opening", config.url);
    await page.goto(config.url, { waitUntil: "domcontentloaded", timeout: 60000 });
    await waitFor(page, ".monaco-workbench", "the workbench", 120000);
    await waitFor(page, `.explorer-folders-view .monaco-list-row[aria-label*="${config.file}"]`,
      `${config.file} in the explorer`, 60000);

    log("quick open", config.file);
    const editorTab = `.tabs-container .tab.active[aria-label*="${config.file}"]`;
    for (let attempt = 1; ; attempt++) {
      await page.keyboard.press("Control+P");
      const input = await waitFor(page, ".quick-input-widget input", "Quick Open", 20000);
      await input.fill(config.file);
      await waitFor(page, `.quick-input-list .monaco-list-row[aria-label*="${config.file}"]`,
        `${config.file} in Quick Open`, 20000);
      await page.keyboard.press("Enter");
      try {
        await waitFor(page, editorTab, `the ${config.file} editor tab`, 20000);
        break;
      } catch (error) {
        if (attempt >= 3) throw error;
        log("retrying quick open:", error.message);
        await page.keyboard.press("Escape");
      }
    }
    const lines = ".editor-instance .monaco-editor .view-lines";
    await waitFor(page, lines, "the editor's text", 20000);
    await page.click(lines);

    await goToCursor(page);
    // The extension's status item shows a sparkle once the language client is running (and has
    // registered its inline completion provider): a trigger before that does nothing.
    await waitFor(page, ".statusbar-item .codicon-sparkle", "Code Llama's status item to show " +
      "the server running (see the Code Llama output)", 90000);
    log("the language client is running");
    // The server reports the model load as progress ("Code Llama: Loading tiny" in the status
    // bar); asking before it ends gets an empty answer (the loop below would ask again).
    await page.waitForTimeout(1000);
    try {
      await page.waitForSelector('.statusbar-item:has-text("Loading")',
        { state: "hidden", timeout: 180000 });
    } catch {
      throw new Error("the model was still loading after 180 s (see the Code Llama output)");
    }
    // Until the model is loaded the server answers empty at once: ask again until ghost text shows.
    const deadline = Date.now() + config.suggestTimeoutMs;
    let ghost = null;
    for (let attempt = 1; !ghost; attempt++) {
      if (Date.now() > deadline) {
        throw new Error(`no ghost text after ${config.suggestTimeoutMs / 1000} s of asking ` +
          `(${attempt - 1} triggers of editor.action.inlineSuggest.trigger)`);
      }
      if (attempt > 1) {
        // VS Code keeps an (empty) answer for the same document and position: move away and
        // back so that the next trigger sends a new request.
        await page.keyboard.press("Escape");
        await page.keyboard.press("Control+Home");
        await goToCursor(page);
      }
      await page.keyboard.press(config.triggerKey);
      try {
        // Long enough for a completion on a slow, busy CPU: a retry cancels the request.
        ghost = await page.waitForSelector(GHOST, { state: "visible", timeout: 20000 });
        log(`ghost text after ${attempt} trigger(s)`);
      } catch {
        log(`trigger ${attempt}: no ghost text yet`);
      }
    }
    await page.waitForTimeout(500); // let the rest of a multi-line suggestion render
    const ghostText = await page.$$eval(GHOST,
      (nodes) => nodes.map((node) => node.textContent).join("\n"));
    log("ghost text:", JSON.stringify(ghostText));
    await page.screenshot({ path: config.screenshot });

    log("accept with Tab, save");
    const before = `Ln ${config.line}, Col ${config.column}`;
    await page.keyboard.press("Tab");
    try {
      // Accepting moves the cursor to the end of the inserted text.
      await page.waitForFunction((where) => ![...document.querySelectorAll(".statusbar-item")]
        .some((item) => item.textContent.includes(where)), before, { timeout: 10000 });
      await page.waitForSelector(GHOST, { state: "detached", timeout: 10000 });
    } catch {
      throw new Error("Tab did not accept the suggestion: the cursor or the ghost text stayed");
    }
    const original = fs.readFileSync(config.path, "utf8");
    await page.keyboard.press("Control+S");
    const saveBy = Date.now() + 15000;
    while (fs.readFileSync(config.path, "utf8") === original) {
      if (Date.now() > saveBy) throw new Error(`${config.file} was not saved 15 s after Ctrl+S`);
      await page.waitForTimeout(200);
    }
    await page.screenshot({ path: config.acceptedScreenshot });
    process.stdout.write(JSON.stringify({ ghostText }) + "\n");
  } catch (error) {
    await page.screenshot({ path: config.failureScreenshot }).catch(() => {});
    throw error;
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: config.chromium,
    headless: true,
    args: config.flags,
    timeout: 60000,
  });
  try {
    await main(browser);
  } finally {
    await browser.close().catch(() => {});
  }
})().catch((error) => {
  log("FAILED:", error.message);
  process.exit(1);
});
"""


def installed_tools() -> dict[str, str]:
    """The paths .ci/editors/vscode.sh installed, or a skip that says how to install them."""
    if not TOOLS.is_file():
        pytest.skip(f"{TOOLS} is missing: run `bash .ci/editors/vscode.sh` (as root) first")
    tools: dict[str, str] = json.loads(TOOLS.read_text(encoding="utf-8"))
    for key in ("node", "code_server", "chromium", "node_path", "extensions_dir"):
        if not Path(tools.get(key, "")).exists():
            pytest.skip(f"{key} ({tools.get(key)}) is missing: run `bash .ci/editors/vscode.sh`")
    return tools


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"code-server exited with {process.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"code-server did not answer {url} within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return f"({path} does not exist)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    text = [line if len(line) <= 400 else line[:400] + " ..." for line in text]
    return f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text)


def stop(process: subprocess.Popen[Any] | None) -> None:
    """Ends a process started with `start_new_session=True`, and everything it started."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


SERVER_GAVE_UP = ("will not be restarted", "couldn't create connection to server")


def watch(driver: subprocess.Popen[bytes], user_data: Path, timeout: float) -> bytes:
    """The driver's stdout once it ends; stops it early when the extension gives up on the server,
    and after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while driver.poll() is None:
        client_logs = user_data.glob("logs/**/*Code Llama*.log")
        text = "".join(path.read_text(errors="replace") for path in client_logs)
        if any(sign in text for sign in SERVER_GAVE_UP) or time.monotonic() > deadline:
            stop(driver)
            return b""
        time.sleep(1)
    assert driver.stdout is not None
    return driver.stdout.read()


def requests_in(server_log: Path) -> int:
    if not server_log.is_file():
        return 0
    text = server_log.read_text(encoding="utf-8", errors="replace")
    return text.count("Request 'textDocument/inlineCompletion' received")


def extension_host_logs(user_data: Path) -> str:
    found = sorted(user_data.glob("logs/**/*Code Llama*.log")) + sorted(
        user_data.glob("logs/**/exthost.log")
    )
    return "\n".join(tail(path, 30) for path in found[-3:]) or f"(no logs under {user_data})"


@pytest.mark.editors
@pytest.mark.timeout(600)
def test_inline_suggestion_accepted_with_tab(
    tmp_path: Path, server_command: str, unused_tcp_port: int
) -> None:
    tools = installed_tools()
    artifacts_dir = REPO / "artifacts"
    artifacts_dir.mkdir(exist_ok=True)

    workspace = tmp_path / "workspace"
    workspace.mkdir()
    source = workspace / FILE_NAME
    source.write_bytes((PREFIX + SUFFIX).encode())

    user_data = tmp_path / "user-data"
    (user_data / "User").mkdir(parents=True)
    server_log = tmp_path / "codellama-lsp.log"
    settings = {
        "chat.disableAIFeatures": True,
        "editor.inlineSuggest.enabled": True,
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "editor.suggestOnTriggerCharacters": False,
        "codellama.model": "tiny",
        "codellama.maxNewTokens": 32,  # short completions: quicker on a CPU
        "codellama.serverPath": server_command,
        "codellama.serverArgs": ["--log-file", str(server_log), "--log-level", "debug"],
        "telemetry.telemetryLevel": "off",
        "security.workspace.trust.enabled": False,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "update.mode": "none",
        "git.enabled": False,
    }
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
    # code-server is a remote window: there, settings of machine scope (serverPath, serverArgs)
    # come from the machine's settings, not the user's.
    machine = {key: value for key, value in settings.items() if key.startswith("codellama.")}
    (user_data / "Machine").mkdir()
    (user_data / "Machine" / "settings.json").write_text(json.dumps(machine, indent=2))
    keybindings = [
        {"key": TRIGGER_KEY, "command": "editor.action.inlineSuggest.trigger"},
    ]
    (user_data / "User" / "keybindings.json").write_text(json.dumps(keybindings, indent=2))

    node_bin = str(Path(tools["node"]).parent)
    env = {
        **os.environ,
        "PATH": node_bin + os.pathsep + os.environ.get("PATH", ""),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    port = unused_tcp_port
    base = f"http://127.0.0.1:{port}"
    code_server_log = tmp_path / "code-server.log"
    driver_log = artifacts_dir / "vscode-driver.log"
    screenshot = artifacts_dir / "vscode-inline.png"
    for stale in (screenshot, artifacts_dir / "vscode-accepted.png"):
        stale.unlink(missing_ok=True)

    code_server = driver = None
    started = time.monotonic()
    try:
        with code_server_log.open("wb") as out:
            code_server = subprocess.Popen(
                [
                    tools["code_server"],
                    "--config", str(tmp_path / "code-server.yaml"),
                    "--bind-addr", f"127.0.0.1:{port}",
                    "--auth", "none",
                    "--user-data-dir", str(user_data),
                    "--extensions-dir", tools["extensions_dir"],
                    "--disable-telemetry",
                    "--disable-update-check",
                    "--disable-workspace-trust",
                    "--disable-getting-started-override",
                    "--ignore-last-opened",
                    str(workspace),
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip
        wait_http(f"{base}/healthz", code_server, code_server_log, timeout=60)

        driver_script = tmp_path / "driver.cjs"
        driver_script.write_text(DRIVER)
        driver_config = {
            "url": f"{base}/?folder={workspace}",
            "file": FILE_NAME,
            "path": str(source),
            "line": CURSOR[0],
            "column": CURSOR[1],
            "triggerKey": "Control+Alt+Shift+I",
            "suggestTimeoutMs": 240_000,
            "chromium": tools["chromium"],
            "flags": CHROMIUM_FLAGS,
            "screenshot": str(screenshot),
            "acceptedScreenshot": str(artifacts_dir / "vscode-accepted.png"),
            "failureScreenshot": str(artifacts_dir / "vscode-failure.png"),
        }
        driver_env = {
            **env,
            "NODE_PATH": tools["node_path"],
            "DRIVER_CONFIG": json.dumps(driver_config),
        }
        with driver_log.open("wb") as err:
            driver = subprocess.Popen(
                [tools["node"], str(driver_script)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                env=driver_env, start_new_session=True,
            )  # fmt: skip
            stdout = watch(driver, user_data, timeout=420)
        diagnostics = "\n".join(
            [
                tail(driver_log),
                f"inline completion requests the server received: {requests_in(server_log)}",
                tail(server_log),
                tail(code_server_log, 20),
                extension_host_logs(user_data),
            ]
        )
        assert driver.returncode == 0, (
            f"the browser driver failed ({driver.returncode}):\n{diagnostics}"
        )
        result = json.loads(stdout.decode().strip().splitlines()[-1])
    finally:
        stop(driver)
        stop(code_server)
    elapsed = time.monotonic() - started

    text = source.read_bytes().decode()
    assert text.startswith(PREFIX) and text.endswith(SUFFIX), (
        f"the saved file lost its text around the cursor:\n{text!r}\n{diagnostics}"
    )
    accepted = text[len(PREFIX) : len(text) - len(SUFFIX)]
    assert accepted.strip(), f"nothing was inserted at the cursor: {text!r}\n{diagnostics}"
    # What showed as ghost text is what got inserted (the DOM renders spaces as non-breaking ones).
    # Compare without whitespace: the DOM splits long lines and renders spaces as U+00A0.
    shown = "".join(result["ghostText"].split())
    first_line = "".join(accepted.strip().splitlines()[0].split())
    assert first_line and first_line in shown, (
        f"accepted {accepted!r}, but the ghost text was {shown!r}"
    )
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    print(f"accepted {accepted!r} in {elapsed:.1f} s; screenshot {screenshot}")
