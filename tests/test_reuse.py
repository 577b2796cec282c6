"""Typed-through reuse never shows text that contradicts what was typed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from codellama_lsp.completion.suggestions import RecentSuggestions, context_at

LINES = ["def f(a, b):\n", "    total = a\n", "    return total\n"]


@settings(max_examples=300, deadline=None)
@given(
    suggestion=st.text(min_size=1, max_size=12),
    typed=st.text(st.characters(blacklist_characters="\r\n"), max_size=8),
)
def test_the_rest_always_agrees_with_what_was_typed(suggestion, typed):
    recent = RecentSuggestions()
    recent.remember("u", context_at(LINES, 1, 13), suggestion)
    now = list(LINES)
    now[1] = "    total = a" + typed + "\n"
    found = recent.lookup("u", context_at(now, 1, 13 + len(typed)))
    if found is None:
        assert not (suggestion.startswith(typed) and len(suggestion) > len(typed))
    else:
        rest, _ = found
        assert typed + rest == suggestion and rest


def test_an_edit_elsewhere_makes_suggestions_stale():
    recent = RecentSuggestions()
    recent.remember("u", context_at(LINES, 1, 13), " + b")
    assert recent.lookup("u", context_at(LINES, 1, 13))[0] == " + b"
    edited = ["def f(a, b, c):\n", *LINES[1:]]
    assert recent.lookup("u", context_at(edited, 1, 13)) is None
    assert recent.lookup("v", context_at(LINES, 1, 13)) is None
    recent.forget("u")
    assert recent.lookup("u", context_at(LINES, 1, 13)) is None


def test_typing_through_line_breaks_keeps_the_suggestion():
    """Accepting a multi-line piece moves the cursor down: the rest still agrees."""
    recent = RecentSuggestions()
    lines = ["def f(a, b):\n", "    \n", "\n", "x = 1\n"]
    recent.remember("u", context_at(lines, 1, 4), "total = a\n    return total")
    accepted = ["def f(a, b):\n", "    total = a\n", "    \n", "\n", "x = 1\n"]
    assert recent.lookup("u", context_at(accepted, 2, 4))[0] == "return total"
    elsewhere = [*accepted[:3], "\n", "x = 2\n"]
    assert recent.lookup("u", context_at(elsewhere, 2, 4)) is None
