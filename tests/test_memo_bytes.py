"""Memos bounded by the bytes they hold, and huge lines cut to what the window can use."""

from __future__ import annotations

from codellama_lsp.bounded_memo import ENTRY_BYTES, BoundedMemo
from codellama_lsp.checkpoint.tokenizer import load_tokenizer
from codellama_lsp.completion.prepare import prompt_for
from codellama_lsp.completion.request import InfillRequest
from codellama_lsp.context import extra_context
from codellama_lsp.context.extra_context import OpenFile, choose_snippets
from codellama_lsp.context.line_tokens import LineTokenCounter
from codellama_lsp.context.window import clip_lines
from codellama_lsp.settings import Settings


def test_the_memo_counts_bytes_and_drops_the_least_recently_used():
    memo: BoundedMemo[str, str] = BoundedMemo(3 * (100 + ENTRY_BYTES), lambda k, v: len(v))
    for key in "abc":
        memo.put(key, "x" * 100)
    assert memo.nbytes == 3 * (100 + ENTRY_BYTES) and len(memo) == 3
    assert memo.get("a") is not None  # now the most recently used
    memo.put("d", "x" * 100)
    assert memo.get("b") is None and memo.get("a") is not None
    memo.put("a", "x" * 10)  # replaced: its old cost is returned
    assert memo.nbytes == 2 * (100 + ENTRY_BYTES) + 10 + ENTRY_BYTES
    memo.put("huge", "x" * 10_000)  # heavier than the bound: not kept, nothing dropped
    assert memo.get("huge") is None and len(memo) == 3
    memo.pop("a")
    assert memo.nbytes == 2 * (100 + ENTRY_BYTES)


def test_normal_lines_are_not_clipped_and_a_huge_line_is_cut_next_to_the_cursor():
    lines = ["a = 1\n", "b = 2\r\n", "c"]
    assert clip_lines(lines, 1, 3, 100) == (lines, 3)
    long = ["x" * 50 + "\n", "y" * 20 + "Z" * 20 + "\r\n", "w" * 50]
    clipped, column = clip_lines(long, 1, 20, 10)
    assert clipped == ["x" * 10 + "\n", "y" * 10 + "Z" * 10 + "\r\n", "w" * 10]
    assert column == 10


def test_a_huge_line_tokenizes_only_what_the_window_can_use():
    tokenizer = load_tokenizer("tiny")
    counter = LineTokenCounter(tokenizer)
    settings = Settings(context_tokens=256)
    line = "value = compute(item); " * 200_000  # 4.6 MB on one line
    column = len(line) // 2
    request = InfillRequest.at(settings, [line], 0, column, "\n")
    _, ids = prompt_for(tokenizer, request, counter)
    reach = 256 * tokenizer.max_piece_chars
    assert counter.nbytes < 4 * reach * 4  # what was encoded: two slices of `reach`
    cut = InfillRequest.at(settings, [line[column - reach : column + reach]], 0, reach, "\n")
    assert ids == prompt_for(tokenizer, cut, LineTokenCounter(tokenizer))[1]
    assert len(ids) <= 256


def test_the_chooser_reads_a_bounded_part_of_long_lines_and_remembers_one_version_a_file():
    long_line = "".join(f"name_{i} = call_{i}(); " for i in range(3000))  # ~60 KB
    before = extra_context._LINE_NAMES.nbytes
    choose_snippets([long_line], 0, [OpenFile("other", "o.py", ("name_1 = 2\n",))], 256)
    assert extra_context._LINE_NAMES.nbytes - before < 64 * 1024
    for version in range(5):
        lines = tuple(f"def name_{i}_{version}(): pass\n" for i in range(2000))
        snippets = choose_snippets(["name_1_0\n"], 0, [OpenFile("edited", "e.py", lines)], 256)
        assert all(
            len(text) <= extra_context.MAX_LINE_CHARS + 1 for s in snippets for text in s.lines
        )
    held = extra_context._WINDOWS.get("edited")
    assert held is not None and held[0].lines == lines  # the last version only
    held_bytes = extra_context._WINDOWS.nbytes
    one = extra_context._windows_bytes("edited", held) + ENTRY_BYTES
    extra_context.forget("edited")
    assert extra_context._WINDOWS.get("edited") is None
    assert extra_context._WINDOWS.nbytes == held_bytes - one  # five versions, one entry
