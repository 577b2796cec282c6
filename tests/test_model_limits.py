"""Checkpoints that would hang or swamp the loader are refused before it opens them.

A sharded checkpoint's index names its shards: each must be a readable regular file inside the
checkpoint's folder. A config.json describing a model far larger than its weights, or than the
memory, is refused with one line before anything is allocated. The commands run as a user runs
them, under an address-space limit, so that a regression fails instead of swamping the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from support.lsp_session import session, stats

ADDRESS_SPACE = 8 * 2**30
"""Far above what the CLI needs with the tiny model, far below what a 10^7-wide MLP takes."""
PEAK_RSS_BOUND = 3 * 2**30


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def complete(model: Path, source: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codellama_lsp", "complete", f"{source}:1:1", "--model", str(model)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        preexec_fn=limited,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codellama-lsp: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "example.py"
    path.write_text("def add(a, b):\n    return a + b\n", encoding="utf-8")
    return path


def sharded(tiny_model_dir: Path, folder: Path, shard: str) -> Path:
    """A copy of the tiny model whose index names `shard` for every tensor."""
    shutil.copytree(tiny_model_dir, folder)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
    (folder / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": dict.fromkeys(names, shard)}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return folder


def edited(tiny_model_dir: Path, folder: Path, **changes: object) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, **changes}), encoding="utf-8")
    return folder


# -- shards ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_shard_that_is_a_fifo_is_refused(tiny_model_dir, tmp_path, source):
    folder = sharded(tiny_model_dir, tmp_path / "fifo-shard", "sub/x.safetensors")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "sub" / "x.safetensors")
    assert_one_line_error(
        complete(folder, source, timeout_s=60),
        f"cannot load {folder / 'sub' / 'x.safetensors'}: it is a FIFO",
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
async def test_a_fifo_shard_leaves_the_server_serving(tiny_model_dir, tmp_path):
    folder = sharded(tiny_model_dir, tmp_path / "fifo-shard", "sub/x.safetensors")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "sub" / "x.safetensors")
    async with session({"model": str(folder)}, wait_ready=False) as client:
        for _ in range(600):
            errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
            if errors:
                break
            await asyncio.sleep(0.1)
        assert errors and "it is a FIFO" in errors[0], client.messages
        assert (await asyncio.wait_for(stats(client), 30))["model"] is None


@pytest.mark.parametrize("shard", ["../../etc/x.safetensors", "/etc/x.safetensors"])
def test_a_shard_outside_the_folder_is_refused(tiny_model_dir, tmp_path, source, shard):
    folder = sharded(tiny_model_dir, tmp_path / "outside", shard)
    assert_one_line_error(complete(folder, source), repr(shard), "shards must be files inside")


def test_a_missing_shard_is_named(tiny_model_dir, tmp_path, source):
    folder = sharded(tiny_model_dir, tmp_path / "missing-shard", "model-00001.safetensors")
    assert_one_line_error(
        complete(folder, source), f"cannot load {folder / 'model-00001.safetensors'}: no such file"
    )


def test_an_oversized_index_is_refused(tiny_model_dir, tmp_path, source):
    folder = sharded(tiny_model_dir, tmp_path / "huge-index", "model.safetensors")
    shutil.copy(tiny_model_dir / "model.safetensors", folder)
    os.truncate(folder / "model.safetensors.index.json", 2**30)  # sparse: no disk used
    assert_one_line_error(complete(folder, source), "index.json", "more than")


# -- what the config describes -----------------------------------------------------------


def test_a_config_far_larger_than_its_weights_is_refused(tiny_model_dir, tmp_path, source):
    folder = edited(tiny_model_dir, tmp_path / "wide", intermediate_size=10**7)
    assert_one_line_error(
        complete(folder, source),
        str(folder / "config.json"),
        "3.8 billion parameters",
        "they do not belong together",
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # of any child so far
    assert peak < PEAK_RSS_BOUND, f"the command took {peak >> 20} MiB"


def test_a_model_larger_than_the_memory_is_refused(tiny_model_dir, tmp_path, source):
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        pytest.skip("no /proc/meminfo to size the model by")
    available = next(
        int(line.split()[1]) * 1024
        for line in meminfo.read_text().splitlines()
        if line.startswith("MemAvailable:")
    )
    per_layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64  # the tiny model's, in parameters
    layers = 2 * available // (4 * per_layer) + 1  # twice the memory, in float32
    folder = edited(tiny_model_dir, tmp_path / "deep", num_hidden_layers=layers)
    # Weights that hold that much, as a sparse file: no disk used, and nothing reads it.
    with open(folder / "extra.safetensors", "wb") as extra:
        extra.truncate(4 * per_layer * layers)
    message = assert_one_line_error(complete(folder, source), "needs ~", "GB are available")
    assert "try a smaller model" in message


@pytest.mark.parametrize(("field", "value"), [("num_hidden_layers", -1), ("hidden_size", 10**12)])
def test_absurd_sizes_are_refused(tiny_model_dir, tmp_path, source, field, value):
    folder = edited(tiny_model_dir, tmp_path / "absurd", **{field: value})
    assert_one_line_error(complete(folder, source), f"{field} {value}", "not a size a model has")


def test_an_oversized_config_is_refused(tiny_model_dir, tmp_path, source):
    folder = tmp_path / "huge-config"
    shutil.copytree(tiny_model_dir, folder)
    with open(folder / "config.json", "ab") as config:
        config.truncate(2**30)
    assert_one_line_error(complete(folder, source), "config.json", "more than")
