"""The command line as a user runs it: real processes, real files, one clear line on failure."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from codellama_lsp import __version__

ROOT = Path(__file__).resolve().parents[1]

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return \n"


def run(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codellama_lsp", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        preexec_fn=limited,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


ADDRESS_SPACE = 8 * 2**30
"""Far above what a command needs: a regression reading /dev/zero fails instead of swamping."""


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("codellama-lsp: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "example.py"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def test_complete_end_to_end_on_a_tiny_model(tiny_model_dir, source):
    result = run(
        "complete", f"{source}:6:12", "--model", str(tiny_model_dir), "--max-new-tokens", "6"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and len(result.stdout) > 1
    assert "prompt tokens" in result.stderr and "first token" in result.stderr


def test_prompt_reproduces_the_reference_ids(codellama_tokenizer_dir, fim_vectors, tmp_path):
    case = next(
        c
        for c in map(json.loads, fim_vectors.read_text(encoding="utf-8").splitlines())
        if not c["spells_marker"] and "\n" in c["prefix"] and "\n" in c["suffix"].strip()
    )
    path = tmp_path / "case.py"
    path.write_bytes((case["prefix"] + case["suffix"]).encode("utf-8"))
    line = case["prefix"].count("\n") + 1
    column = len(case["prefix"].rsplit("\n", 1)[-1]) + 1
    where = (f"{path}:{line}:{column}", "--format", "ids", "--model", str(codellama_tokenizer_dir))
    for order in ("psm", "spm"):  # the reference prompts are Code Llama's own: not healed
        result = run("prompt", *where, "--order", order, "--token-healing", "off")
        assert result.returncode == 0, result.stderr
        assert [int(i) for i in result.stdout.split()] == case[order]
        assert result.stderr == ""
    # Healed (the default, suffix-first): the last prefix token is backed off, and named.
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer

    healed = run("prompt", *where, "--order", "spm")
    assert healed.returncode == 0, healed.stderr
    assert [int(i) for i in healed.stdout.split()] == case["spm"][:-1]
    backed_off = load_tokenizer(str(codellama_tokenizer_dir)).decode_bytes(case["spm"][-1:])
    start = json.dumps(backed_off.decode("utf-8"), ensure_ascii=False)
    assert (
        healed.stderr == f"codellama-lsp: the completion must start with {start} (token healing)\n"
    )


def test_prompt_as_text(codellama_tokenizer_dir, source):
    result = run(
        "prompt", f"{source}:6:12", "--order", "psm", "--model", str(codellama_tokenizer_dir)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"<s> <PRE> {SOURCE[:-1]} <SUF>\n <MID>\n"


def test_prompt_needs_no_weights(tiny_model_dir, tmp_path, source):
    tokenizer_only = tmp_path / "tokenizer-only"
    tokenizer_only.mkdir()
    (tokenizer_only / "tokenizer.model").write_bytes(
        (tiny_model_dir / "tokenizer.model").read_bytes()
    )
    result = run("prompt", f"{source}:2:5", "--model", str(tokenizer_only))
    assert result.returncode == 0, result.stderr
    assert "<MID>" in result.stdout


def test_prompt_uses_the_window_complete_would_use(tmp_path):
    """The shipped tiny model declares 512 positions: with maxNewTokens 128 the prompt has at
    most 383 tokens, whatever contextTokens says."""
    long_file = tmp_path / "long.py"
    long_file.write_text("".join(f"value_{i} = {i} * 2\n" for i in range(2000)), encoding="utf-8")
    result = run("prompt", f"{long_file}:1000:1", "--model", "tiny", "--format", "ids")
    assert result.returncode == 0, result.stderr
    assert 300 < len(result.stdout.split()) <= 512 - 128 - 1


@pytest.mark.parametrize(
    ("where", "fragments"),
    [
        ("missing.py:1:1", ("missing.py", "no such file")),
        ("example.py:99:1", ("line 99 is past the end",)),
        ("example.py:2:99", ("column 99 is past the end",)),
        ("example.py:2", ("expected FILE:LINE:COL",)),
        ("example.py:0:1", ("count from 1",)),
    ],
)
def test_bad_positions(tiny_model_dir, source, where, fragments):
    result = run("prompt", str(source.parent / where), "--model", str(tiny_model_dir))
    assert_one_line_error(result, *fragments)


def test_a_folder_without_a_tokenizer(tmp_path, source):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert_one_line_error(
        run("prompt", f"{source}:1:1", "--model", str(empty)),
        "no tokenizer.json or tokenizer.model",
    )


def test_a_tokenizer_without_infilling_pieces(plain_tokenizer_dir, source):
    assert_one_line_error(
        run("prompt", f"{source}:1:1", "--model", str(plain_tokenizer_dir)),
        "not a Code Llama infilling tokenizer",
    )


def test_a_hub_model_that_is_not_cached_while_offline(source):
    assert_one_line_error(
        run("complete", f"{source}:1:1", "--model", "codellama/CodeLlama-7b-hf"),
        "not a local folder",
        "could not be reached",
    )


def test_pickled_weights_are_refused(tiny_model_dir, tmp_path, source):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.model"):
        (pickled / name).write_bytes((tiny_model_dir / name).read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    assert_one_line_error(
        run("complete", f"{source}:1:1", "--model", str(pickled)), "no .safetensors weights"
    )


def test_no_gpu_and_no_bitsandbytes(tiny_model_dir, source):
    assert_one_line_error(
        run("complete", f"{source}:1:1", "--model", str(tiny_model_dir), "--device", "cuda"),
        "no CUDA GPU",
    )
    assert_one_line_error(
        run("complete", f"{source}:1:1", "--model", str(tiny_model_dir), "--quantization", "4bit"),
        "bitsandbytes",
    )


def test_version_and_help():
    assert run("--version").stdout.strip() == f"codellama-lsp {__version__}"
    helped = run("--help")
    assert helped.returncode == 0
    for word in ("serve", "complete", "prompt", "--tcp", "--log-file", "--log-level"):
        assert word in helped.stdout


def test_tcp_listens_on_loopback_only(tiny_model_dir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codellama_lsp",
            "--tcp",
            str(port),
            "--log-file",
            str(log),
            "--log-level",
            "info",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
        ).encode()
        for _ in range(300):
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not listen on 127.0.0.1")
        with connection:
            connection.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            reply = connection.recv(65536)
            listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert b'"capabilities"' in reply and b"inlineCompletionProvider" in reply
        bound = [line for line in listening.splitlines() if f":{port} " in line]
        assert bound and all("127.0.0.1:" in line for line in bound), listening
    finally:
        server.kill()
        server.wait()


def test_the_readme_quick_start_completes_offline_with_the_shipped_model():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = next(
        line for line in readme.splitlines() if line.startswith("codellama-lsp complete examples/")
    )
    args = command.split()[1:]
    done = subprocess.run(
        [sys.executable, "-m", "codellama_lsp", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "total"
    assert "`total`" in readme


# -- files that are not regular files ------------------------------------------------------


@pytest.fixture
def special(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a device and a loop of links, each of which a reader would hang or choke on."""
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.py"
    loop.symlink_to(tmp_path / "loop.py")
    return {"FIFO": fifo, "device": Path("/dev/zero"), "loop": loop}


EXPLAINED = {
    "FIFO": "it is a FIFO (named pipe), not a regular file",
    "device": "it is a device, not a regular file",
    "loop": "a loop of symbolic links",
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", list(EXPLAINED))
@pytest.mark.parametrize("command", ["complete", "prompt"])
def test_a_source_that_is_not_a_regular_file_is_refused(special, source, command, kind):
    path = special[kind]
    as_file = run(command, f"{path}:1:1", "--model", "tiny", timeout_s=60)
    assert_one_line_error(as_file, f"{path}: {EXPLAINED[kind]}")
    beside = run(command, f"{source}:1:1", "--with", str(path), "--model", "tiny", timeout_s=60)
    assert_one_line_error(beside, f"{path}: {EXPLAINED[kind]}")


def test_a_missing_with_file_is_reported_before_the_model_loads(tiny_model_dir, tmp_path, source):
    """The folder has a tokenizer but no weights: the missing file is what is wrong first."""
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.model", no_weights)
    result = run(
        "complete", f"{source}:1:1", "--with", str(tmp_path / "gone.py"), "--model", str(no_weights)
    )
    assert_one_line_error(result, "gone.py: no such file")


def test_a_model_that_is_a_file(source):
    assert_one_line_error(
        run("complete", f"{source}:1:1", "--model", str(source)),
        f"{source}: it is a file, not a model folder",
    )


def test_weights_that_link_to_nothing(tiny_model_dir, tmp_path, source):
    folder = tmp_path / "dangling"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.unlink()
    weights.symlink_to(tmp_path / "elsewhere.safetensors")
    assert_one_line_error(
        run("complete", f"{source}:1:1", "--model", str(folder)),
        f"cannot load {weights}: a link to a missing file",
    )


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv, to run the command as a user the file is closed to",
)
def test_weights_the_user_may_not_read(tiny_model_dir):
    """chmod 000 does not stop root: the command runs as `nobody` (safetensors reports the
    EACCES it meets as 'No such file or directory')."""
    shared = Path(tempfile.mkdtemp(prefix="codellama-lsp-closed-"))  # pytest's is root's only
    try:
        shared.chmod(0o755)
        folder = shared / "model"
        shutil.copytree(tiny_model_dir, folder)
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.chmod(0o644)
        (folder / "model.safetensors").chmod(0)
        code = shared / "example.py"
        code.write_text(SOURCE, encoding="utf-8")
        code.chmod(0o644)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command = [sys.executable, "-m", "codellama_lsp", "complete", f"{code}:1:1"]
        result = subprocess.run(
            [*nobody, *command, "--model", str(folder)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(shared / "hf")},
        )
        if "codellama-lsp: error" not in result.stderr:
            pytest.skip(f"`nobody` cannot run this Python: {result.stderr.strip()[-200:]}")
        weights = folder / "model.safetensors"
        assert_one_line_error(result, f"cannot load {weights}: permission denied")
    finally:
        shutil.rmtree(shared)
