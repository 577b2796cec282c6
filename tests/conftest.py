from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.llama_server import LLAMA_CPP, MAKE_GGUF, SERVER_BINARY
from support.model_factory import build_model, build_tokenizer
from support.reference_files import CODELLAMA_TOKENIZER, FIM_VECTORS


@pytest.fixture(scope="session")
def codellama_tokenizer_dir() -> Path:
    """Code Llama 7B's real tokenizer files: reference material, not shipped with the project."""
    if not (CODELLAMA_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"Code Llama's tokenizer files are not at {CODELLAMA_TOKENIZER} (../shared)")
    return CODELLAMA_TOKENIZER


@pytest.fixture(scope="session")
def fim_vectors() -> Path:
    if not FIM_VECTORS.is_file():
        pytest.skip(f"the reference infilling vectors are not at {FIM_VECTORS} (../shared)")
    return FIM_VECTORS


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Code Llama-format checkpoint in a temporary folder."""
    return build_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def plain_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer without the infilling pieces (not a Code Llama checkpoint)."""
    return build_tokenizer(tmp_path_factory.mktemp("plain-tokenizer"), infilling=False)


@pytest.fixture(scope="session")
def gguf_maker(tmp_path_factory):
    if not (SERVER_BINARY.is_file() and MAKE_GGUF.is_file()):
        pytest.skip(f"llama.cpp's llama-server and make-gguf are not in {LLAMA_CPP} (../shared)")

    def make(model_dir: Path) -> Path:
        out = tmp_path_factory.mktemp("gguf") / "model.gguf"
        env = {**os.environ, "PYTHON": sys.executable}
        subprocess.run(
            [str(MAKE_GGUF), str(model_dir), str(out)], check=True, env=env, capture_output=True
        )
        return out

    return make
