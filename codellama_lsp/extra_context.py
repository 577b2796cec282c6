"""Snippets of the user's other files for the start of the prompt, chosen like Copilot's tabs.

The code around the cursor calls names defined in the files open beside it, which the model
cannot otherwise see. Each other file is cut into overlapping windows of lines; a window's score
is the overlap of its identifiers with those around the cursor (a Jaccard index with rare names
weighing more, so a definition of the one unusual name used here beats a block of `self`s). The
best windows go at the very start of the prefix, as comments in the document's own comment
syntax under their file's path: Code Llama has no repository-level tokens.

The snippets sit before everything else in the prompt, so a change to them re-prefills it all:
`StableChoice` keeps a choice while the user types in one place.
"""

from __future__ import annotations

import keyword
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

WINDOW_LINES = 12
STRIDE = 4
QUERY_BEFORE = 40
"""Lines before the cursor whose identifiers say what the snippets should be about."""
QUERY_AFTER = 10
MAX_SNIPPETS = 16
"""Candidates handed to the prompt builder, best first; it keeps those that fit the budget."""
CHARS_PER_TOKEN = 3
"""A low estimate for code, so that the candidates handed on more than fill the budget."""
PAUSE_S = 1.0
"""A gap between requests this long ends a burst of typing: the choice may then change."""
MOVE_LINES = 8
"""A cursor this far from where the choice was made is somewhere else: choose again."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMON = frozenset(keyword.kwlist) | {
    "self", "cls", "this", "const", "let", "var", "function", "func", "fn", "return",
    "public", "private", "static", "void", "int", "str", "bool", "float", "string", "new",
}  # fmt: skip

LINE_COMMENTS = {
    "python": "#", "ruby": "#", "shellscript": "#", "perl": "#", "r": "#", "yaml": "#",
    "toml": "#", "dockerfile": "#", "makefile": "#", "cmake": "#", "julia": "#",
    "elixir": "#", "powershell": "#", "lua": "--", "sql": "--", "haskell": "--",
    "elm": "--", "clojure": ";;", "lisp": ";;", "scheme": ";;", "latex": "%", "erlang": "%",
    "matlab": "%", "vim": '"', "bat": "REM",
}  # fmt: skip
"""languageId -> line comment marker; the C family's `//` for any other language."""
_SUFFIX_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".rb": "ruby", ".sh": "shellscript",
    ".bash": "shellscript", ".pl": "perl", ".r": "r", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".jl": "julia", ".ex": "elixir", ".exs": "elixir", ".ps1": "powershell",
    ".lua": "lua", ".sql": "sql", ".hs": "haskell", ".elm": "elm", ".clj": "clojure",
    ".lisp": "lisp", ".scm": "scheme", ".tex": "latex", ".erl": "erlang", ".m": "matlab",
    ".vim": "vim", ".bat": "bat", ".cmd": "bat",
}  # fmt: skip


@dataclass(frozen=True)
class OpenFile:
    """A file the user has beside the one being edited (open, or recently closed)."""

    key: str
    """What tells files apart: the document's URI."""
    path: str
    """As shown in the prompt: relative to the workspace where it lies in one."""
    lines: Sequence[str]


@dataclass(frozen=True)
class _Window:
    file: OpenFile
    start: int
    end: int
    names: frozenset[str]


def comment_marker(language_id: str, path: str = "") -> str:
    """The line comment of a document's language (by languageId, else by the file's suffix)."""
    language = language_id or _SUFFIX_LANGUAGES.get(PurePath(path).suffix.lower(), "")
    return LINE_COMMENTS.get(language, "//")


def identifiers(text: str) -> set[str]:
    return {name for name in _IDENTIFIER.findall(text) if name not in _COMMON and len(name) > 1}


def render_snippet(path: str, lines: Sequence[str], marker: str) -> str:
    """`# Path: pkg/models.py` and the lines, commented; it ends with a line end."""
    body = [f"{marker} {text}".rstrip() for text in (line.rstrip("\r\n") for line in lines)]
    return "\n".join([f"{marker} Path: {path}", *body]) + "\n"


def choose_snippets(
    lines: Sequence[str], line: int, others: Sequence[OpenFile], marker: str, budget: int
) -> tuple[str, ...]:
    """Rendered snippets of `others`, best first, enough to more than fill `budget` tokens.

    `lines` and `line` are the document and the cursor's line; windows with nothing in common
    with the lines around the cursor are never chosen, nor two overlapping windows of one file.
    """
    if budget <= 0 or not others:
        return ()
    query = identifiers("".join(lines[max(0, line - QUERY_BEFORE) : line + QUERY_AFTER + 1]))
    if not query:
        return ()
    windows = [window for file in others for window in _windows(file)]
    frequency = Counter(name for window in windows for name in window.names & query)
    weight = {name: math.log(1 + len(windows) / (1 + frequency[name])) for name in query}
    query_weight = sum(weight.values())

    def score(window: _Window) -> float:
        shared = sum(weight[name] for name in window.names & query)
        if not shared:
            return 0.0
        other = len(window.names - query) * math.log(1 + len(windows))
        return shared / (query_weight + other)

    ranked = sorted(
        ((score(window), index, window) for index, window in enumerate(windows)),
        key=lambda item: (-item[0], item[1]),
    )
    chosen: list[_Window] = []
    estimate = 0
    for value, _, window in ranked:
        if value <= 0 or len(chosen) == MAX_SNIPPETS or estimate > 2 * budget:
            break
        if any(
            taken.file.key == window.file.key
            and taken.start < window.end
            and window.start < taken.end
            for taken in chosen
        ):
            continue
        chosen.append(window)
        text = window.file.lines[window.start : window.end]
        estimate += sum(len(line) for line in text) // CHARS_PER_TOKEN
    return tuple(
        render_snippet(window.file.path, window.file.lines[window.start : window.end], marker)
        for window in chosen
    )


def _windows(file: OpenFile) -> list[_Window]:
    count = len(file.lines)
    starts = range(0, max(count - WINDOW_LINES, 0) + STRIDE, STRIDE)
    windows = []
    for start in starts:
        end = min(start + WINDOW_LINES, count)
        names = identifiers("".join(file.lines[start:end]))
        if names:
            windows.append(_Window(file, start, end, frozenset(names)))
        if end == count:
            break
    return windows


def fit_snippets(
    snippets: Sequence[str], budget: int, count_tokens: Callable[[str], int]
) -> tuple[str, int]:
    """The best snippets that fit in `budget` tokens, as the prompt's opening text, and its cost.

    The best goes last, nearest the document's own text.
    """
    kept: list[str] = []
    used = 0
    for snippet in snippets:
        cost = count_tokens(snippet)
        if used + cost <= budget:
            kept.append(snippet)
            used += cost
    return "".join(reversed(kept)), used


@dataclass
class StableChoice:
    """The last choice of snippets, kept while the user types in one place.

    It is chosen again on a switch of document, when the cursor has moved elsewhere, after a
    pause in typing, or when the files beside it change (opened, closed, edited elsewhere).
    """

    key: object = None
    line: int = -1
    last_request: float = -math.inf
    snippets: tuple[str, ...] = ()

    def get(
        self, key: object, line: int, now: float, choose: Callable[[], tuple[str, ...]]
    ) -> tuple[str, ...]:
        paused = now - self.last_request >= PAUSE_S
        self.last_request = now
        if key != self.key or abs(line - self.line) >= MOVE_LINES or paused:
            self.key, self.line, self.snippets = key, line, choose()
        return self.snippets
