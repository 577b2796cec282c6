"""The engine's CPU threads follow one policy on every path that loads a model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.lsp_session import session, stats

from codellama_lsp.engine.model import physical_cores

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return \n"


def complete(path: Path, *args: str, omp: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp
    command = ["complete", f"{path}:6:12", "--model", "tiny", "--max-new-tokens", "2", *args]
    return subprocess.run(
        [sys.executable, "-m", "codellama_lsp", *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )


def threads_phrase(count: int) -> str:
    return f"{count} CPU thread" + ("s" if count != 1 else "") + ")"


def test_physical_cores_are_among_the_cpus_this_process_may_use():
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))


def test_complete_leaves_a_core_to_the_machine_by_default(tmp_path):
    path = tmp_path / "example.py"
    path.write_text(SOURCE, encoding="utf-8")
    automatic = complete(path)
    expected = max(1, physical_cores() - 1)
    assert automatic.returncode == 0, automatic.stderr
    assert threads_phrase(expected) in automatic.stderr
    asked = complete(path, "--threads", "2")
    assert asked.returncode == 0, asked.stderr
    assert threads_phrase(2) in asked.stderr
    # The user's own OpenMP setting is kept when no count is asked for (torch caps it at the
    # CPUs, so a count other than the automatic one that fits any machine of 2 or more).
    other = 2 if expected == 1 else 1
    user = complete(path, omp=str(other))
    assert user.returncode == 0, user.stderr
    assert threads_phrase(other) in user.stderr


def test_a_negative_thread_count_is_a_usage_error(tmp_path):
    path = tmp_path / "example.py"
    path.write_text(SOURCE, encoding="utf-8")
    result = complete(path, "--threads", "-1")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("error: argument --threads: -1 is not between 0 and 256")
    )


@pytest.mark.asyncio
async def test_the_server_uses_the_setting():
    async with session({"model": "tiny", "device": "cpu", "threads": 2}) as client:
        assert threads_phrase(2) in (await stats(client))["model"]
