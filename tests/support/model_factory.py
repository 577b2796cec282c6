"""Small Code Llama-format checkpoints that tests build for themselves (no hub, no shared/).

A sentencepiece BPE tokenizer with Code Llama's infilling pieces, trained in a second on a few
standard-library files, and a random-weight `LlamaForCausalLM` saved with `save_pretrained`
(safetensors), so every test loads it through the same code as a real checkpoint.
"""

from __future__ import annotations

import io
import sysconfig
from pathlib import Path

INFILL_PIECES = ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]
SOURCES = ["textwrap.py", "string.py", "bisect.py", "heapq.py", "fnmatch.py"]


def build_tokenizer(folder: Path, *, infilling: bool = True, vocab_size: int = 1000) -> Path:
    import sentencepiece

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "\n".join((stdlib / name).read_text(encoding="utf-8") for name in SOURCES)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=INFILL_PIECES if infilling else [],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    return folder


def build_model(folder: Path, *, seed: int = 0, layers: int = 2, vocab_size: int = 1000) -> Path:
    """A random-weight Llama that loads like any checkpoint; its output is fixed by `seed`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    build_tokenizer(folder, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
