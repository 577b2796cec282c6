"""Prompts assembled from per-line token ids are the ids of tokenizing the window whole."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support.completions import request as request_at
from support.reference_files import CODELLAMA_TOKENIZER

from codellama_lsp.checkpoint.tokenizer import (
    FimTokenizer,
    _SentencePieceBackend,
    _TokenizersBackend,
    load_tokenizer,
)
from codellama_lsp.completion.prepare import prompt_for
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.context.prompt import (
    assemble_prompt,
    build_prompt,
    encode_infilling_lines,
    encode_lines,
)


def codellama_backends(folder: Path) -> list[FimTokenizer]:
    return [
        FimTokenizer(_TokenizersBackend(folder / "tokenizer.json"), "tokenizer.json"),
        FimTokenizer(_SentencePieceBackend(folder / "tokenizer.model"), "tokenizer.model"),
    ]


@functools.cache
def tokenizers() -> list[FimTokenizer]:
    """The shipped model's tokenizer, and Code Llama's (both files) where ../shared has them."""
    found = [load_tokenizer("tiny")]
    if CODELLAMA_TOKENIZER.is_dir():
        found += codellama_backends(CODELLAMA_TOKENIZER)
    return found


def _split_lf(text: str) -> list[str]:
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def test_no_piece_of_codellamas_vocabulary_holds_a_newline(codellama_tokenizer_dir):
    for tokenizer in codellama_backends(codellama_tokenizer_dir):
        pieces = tokenizer._backend.pieces()
        assert len(pieces) == 32016
        assert [piece for piece in pieces if "\n" in piece] == []
        assert pieces.index("<0x0A>") == 13  # a newline is always this byte token
        assert tokenizer.lines_tokenize_alone


def test_the_shipped_tokenizer_tokenizes_lines_alone():
    assert load_tokenizer("tiny").lines_tokenize_alone


def test_reference_ids_from_per_line_ids(codellama_tokenizer_dir, fim_vectors):
    cases = [json.loads(line) for line in fim_vectors.read_text(encoding="utf-8").splitlines()]
    for tokenizer in codellama_backends(codellama_tokenizer_dir):
        line_tokens = LineTokenCounter(tokenizer)
        for case in cases:
            prefix_ids = encode_lines(tokenizer, _split_lf(case["prefix"]), line_tokens.ids)
            suffix_ids = encode_infilling_lines(_split_lf(case["suffix"]), line_tokens.ids)
            for order in ("psm", "spm"):
                ids = assemble_prompt(tokenizer, prefix_ids, suffix_ids, order)
                # Text that spells a marker is spelled in bytes, unlike the reference recipe.
                expected = (
                    build_prompt(tokenizer, case["prefix"], case["suffix"], order)
                    if case["spells_marker"]
                    else case[order]
                )
                assert ids == expected, (tokenizer.source, order, case["prefix"][:40])


LINE_TEXT = st.lists(
    st.sampled_from(
        [*"abc_(): =.,'\"\t#", "  ", "    ", "def ", "return", "é", "中", "😀", "<SUF>", "☺"]
    ),
    max_size=12,
).map("".join)
EDIT = st.tuples(
    st.integers(min_value=0, max_value=10_000),  # line (modulo the document's lines)
    st.integers(min_value=0, max_value=10_000),  # column (modulo the line's length)
    st.integers(min_value=0, max_value=3),  # characters deleted
    st.sampled_from(["", "x", " ", "\n", "    ", "é", "<MID>", "\n\n", "a\nb"]),  # inserted
)


def edited(lines: list[str], edit: tuple[int, int, int, str]) -> tuple[list[str], int, int]:
    """The document after one edit, and the cursor after the inserted text."""
    text = "".join(lines)
    starts = [sum(len(line) for line in lines[:i]) for i in range(len(lines))]
    line = edit[0] % len(lines)
    column = edit[1] % (len(lines[line].rstrip("\r\n")) + 1)
    at = starts[line] + column
    text = text[:at] + edit[3] + text[at + edit[2] :]
    cursor = at + len(edit[3])
    new_lines = _split_lf(text) or [""]
    if text.endswith("\n"):
        new_lines.append("")
    before = text[:cursor]
    cursor_line = before.count("\n")
    return new_lines, cursor_line, len(before) - (before.rfind("\n") + 1)


@settings(max_examples=60, deadline=None)
@given(
    document=st.lists(LINE_TEXT, min_size=1, max_size=60),
    eol=st.sampled_from(["\n", "\r\n"]),
    edits=st.lists(EDIT, min_size=1, max_size=8),
    budget=st.sampled_from([64, 200, 100_000]),
    order=st.sampled_from(["spm", "psm"]),
)
def test_random_edits_give_the_ids_of_a_full_rebuild(document, eol, edits, budget, order):
    lines = [text + "\n" for text in document[:-1]] + [document[-1]]
    for tokenizer in tokenizers():
        line_tokens = LineTokenCounter(tokenizer)  # kept across the edits, as the worker does
        current = lines
        for edit in edits:
            current, line, column = edited(current, edit)
            in_eol = [text.replace("\n", eol) for text in current]
            request = request_at(in_eol, line, column, order, eol, context_tokens=budget)
            window, ids = prompt_for(tokenizer, request, line_tokens)
            assert ids == build_prompt(tokenizer, window.prefix, window.suffix, order, budget), (
                tokenizer.source
            )


def test_a_tokenizer_with_a_piece_across_lines_tokenizes_the_window_whole():
    tokenizer = load_tokenizer("tiny")
    tokenizer.lines_tokenize_alone = False
    lines = ["def f(x):\n", "    y = x\n", "    return y\n"]
    request = request_at(lines, 1, 4, context_tokens=2048)
    window, ids = prompt_for(tokenizer, request, LineTokenCounter(tokenizer))
    assert ids == build_prompt(tokenizer, window.prefix, window.suffix, "spm", 2048)


def test_line_ids_are_kept_between_keystrokes():
    tokenizer = load_tokenizer("tiny")
    line_tokens = LineTokenCounter(tokenizer)
    lines = [f"value_{i} = compute({i})\n" for i in range(200)] + [""]
    request = request_at(lines, 100, 4, context_tokens=2048)
    prompt_for(tokenizer, request, line_tokens)
    kept = {text: line_tokens.ids(text) for text in lines[:-1]}
    lines[100] = "valXue_100 = compute(100)\n"
    prompt_for(tokenizer, request, line_tokens)
    assert all(line_tokens.ids(text) is ids for text, ids in kept.items())
    assert list(line_tokens.ids("value_7 = compute(7)\n")) == tokenizer.encode_infilling(
        "value_7 = compute(7)\n"
    )
