"""Prompts are exactly the ones Code Llama was trained on, and file text cannot inject markers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codellama_lsp.checkpoint.tokenizer import (
    FimTokenizer,
    TokenizerError,
    _SentencePieceBackend,
    _TokenizersBackend,
    load_tokenizer,
)
from codellama_lsp.context.prompt import build_prompt, render_prompt

MARKER_TEXTS = ["<PRE>", " <SUF>", "x <MID> y", "<EOT><EOT>", " <EOT>", "</s>", "<s>"]


def both_backends(folder: Path) -> list[FimTokenizer]:
    return [
        FimTokenizer(_TokenizersBackend(folder / "tokenizer.json"), "tokenizer.json"),
        FimTokenizer(_SentencePieceBackend(folder / "tokenizer.model"), "tokenizer.model"),
    ]


def test_reference_ids_both_orders_both_tokenizer_files(codellama_tokenizer_dir, fim_vectors):
    cases = [json.loads(line) for line in fim_vectors.read_text(encoding="utf-8").splitlines()]
    plain = [case for case in cases if not case["spells_marker"]]
    assert len(plain) > 100
    for tokenizer in both_backends(codellama_tokenizer_dir):
        for case in plain:
            for order in ("psm", "spm"):
                ids = build_prompt(tokenizer, case["prefix"], case["suffix"], order)
                assert ids == case[order], (tokenizer.source, order, case["prefix"][:40])


def test_codellama_infilling_ids(codellama_tokenizer_dir):
    tokenizer = load_tokenizer(str(codellama_tokenizer_dir))
    ids = tokenizer.ids
    assert (ids.bos, ids.eos, ids.pre, ids.suf, ids.mid, ids.eot) == (
        1,
        2,
        32007,
        32008,
        32009,
        32010,
    )


def test_file_text_never_becomes_a_control_id(codellama_tokenizer_dir, fim_vectors):
    cases = [json.loads(line) for line in fim_vectors.read_text(encoding="utf-8").splitlines()]
    spelled = [case for case in cases if case["spells_marker"]]
    assert spelled
    for tokenizer in both_backends(codellama_tokenizer_dir):
        control = tokenizer.control_ids
        texts = [*MARKER_TEXTS, *(c["prefix"] for c in spelled), *(c["suffix"] for c in spelled)]
        for text in texts:
            for encoded in (tokenizer.encode(text), tokenizer.encode_infilling(text)):
                assert not control.intersection(encoded), (tokenizer.source, text)
            assert tokenizer.decode(tokenizer.encode_infilling(text)) == text
            assert tokenizer.decode(tokenizer.encode(text)) == " " + text if text else True
        for case in spelled:
            ids = build_prompt(tokenizer, case["prefix"], case["suffix"], "spm")
            marks = tokenizer.ids
            assert [i for i in ids if i in control] == [marks.bos, marks.pre, marks.suf, marks.mid]


def test_injection_with_a_sentencepiece_tokenizer(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    for text in MARKER_TEXTS:
        ids = build_prompt(tokenizer, "a = '" + text, text + "'\n", "psm")
        marks = tokenizer.ids
        assert [i for i in ids if i in tokenizer.control_ids] == [
            marks.bos,
            marks.pre,
            marks.suf,
            marks.mid,
        ]


def test_budget_cuts_the_far_ends(codellama_tokenizer_dir):
    tokenizer = load_tokenizer(str(codellama_tokenizer_dir))
    prefix = "".join(f"line_{i} = {i}\n" for i in range(400))
    suffix = "".join(f"after_{i} = {i}\n" for i in range(400))
    for order in ("psm", "spm"):
        ids = build_prompt(tokenizer, prefix, suffix, order, budget=300)
        assert len(ids) == 300
        text = render_prompt(tokenizer, ids)
        assert "line_399 = 399\n" in text and "line_0 =" not in text
        assert "after_0 = 0" in text and "after_399" not in text


def test_render_shows_markers(codellama_tokenizer_dir):
    tokenizer = load_tokenizer(str(codellama_tokenizer_dir))
    ids = build_prompt(tokenizer, "def f(x):\n    ", "\n    return x\n", "psm")
    assert render_prompt(tokenizer, ids) == "<s> <PRE> def f(x):\n     <SUF>\n    return x\n <MID>"


def test_tokenizer_without_infilling_pieces(plain_tokenizer_dir):
    with pytest.raises(TokenizerError, match="not a Code Llama infilling tokenizer"):
        load_tokenizer(str(plain_tokenizer_dir))
