"""The window fits its budget in whole lines, favours the prefix, and holds still while typing."""

from __future__ import annotations

from codellama_lsp.context.window import BLOCK_LINES, fit_window


def count(text: str) -> int:
    """One token per four characters, at least one per line: close enough to a real tokenizer."""
    return max(1, len(text) // 4) if text else 0


def document(n: int, eol: str = "\n") -> list[str]:
    lines = [f"value_{i:04d} = compute({i})" + eol for i in range(n)]
    lines[-1] = lines[-1].rstrip("\r\n")
    return lines


def test_whole_document_when_it_fits():
    lines = document(20)
    window = fit_window(lines, 10, 5, 2048, count)
    assert window.prefix + window.suffix == "".join(lines)
    assert (window.first_line, window.end_line) == (0, 20)


def test_budget_whole_lines_and_three_to_one():
    lines = document(2000)
    window = fit_window(lines, 1000, 8, 512, count)
    total = sum(count(line) for line in window.prefix.splitlines(keepends=True)) + sum(
        count(line) for line in window.suffix.splitlines(keepends=True)
    )
    assert 512 - 2 * BLOCK_LINES * count(lines[0]) < total <= 512
    assert window.prefix.startswith("value_") and window.suffix.endswith("\n")
    before = window.prefix.count("\n")
    after = window.suffix.count("\n")
    assert before > 2 * after and after >= 512 * 0.25 / count(lines[0]) - BLOCK_LINES
    assert window.first_line % BLOCK_LINES == 0 and window.end_line % BLOCK_LINES == 0


def test_edges_hold_still_while_typing_on_a_line():
    lines = document(2000)
    first = fit_window(lines, 1000, 0, 512, count)
    typed = lines[1000].rstrip("\n")
    for column in range(1, len(typed)):
        lines[1000] = typed[:column] + "\n"
        window = fit_window(lines, 1000, column, 512, count)
        assert (window.first_line, window.end_line) == (first.first_line, first.end_line)


def test_crlf_becomes_lf_and_the_cursor_line_splits_exactly():
    lines = document(5, "\r\n")
    window = fit_window(lines, 2, 6, 2048, count)
    assert "\r" not in window.prefix + window.suffix
    assert window.prefix.endswith("value_")
    assert window.suffix.startswith("0002 = compute(2)\n")


def test_prefix_short_gives_its_share_to_the_suffix():
    lines = document(2000)
    window = fit_window(lines, 3, 0, 512, count)
    assert window.first_line == 0
    assert window.suffix.count("\n") > 40
