"""Where ../shared's reference material lies: absent for a user who clones the project."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CODELLAMA_TOKENIZER = SHARED / "codellama-7b-hf-tokenizer"
FIM_VECTORS = SHARED / "fim-reference" / "vectors.jsonl"
