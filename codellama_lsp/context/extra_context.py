"""Snippets of the user's other files for the start of the prompt, chosen like Copilot's tabs.

The code around the cursor calls names defined in the files open beside it, which the model
cannot otherwise see. Each other file is cut into overlapping windows of lines, scored by the
overlap of their identifiers with those around the cursor (a Jaccard index with rare names
weighing more, as Copilot's neighbouring tabs do), plus one window per definition (its
signature), scored by how near the cursor the document uses the name it defines: the next line
often calls a name the file imported far above. The best go at the very start of the prefix,
as comments in the document's own comment syntax under their file's path: Code Llama has no
repository-level tokens.

The snippets sit before everything else in the prompt, so a change to them re-prefills it all:
`StableChoice` keeps a choice while the user types in one place.
"""

from __future__ import annotations

import keyword
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from codellama_lsp.bounded_memo import BoundedMemo

WINDOW_LINES = 12
STRIDE = 4
MAX_SIGNATURE_LINES = 8
"""A definition's window runs to the end of its signature (its brackets closed), at most this."""
DEFINITION_WEIGHT = 3.0
DISTANCE_SCALE = 20
"""A definition whose name is used this many lines from the cursor weighs half as much."""
MAX_DEFINITIONS = 2
"""A name defined more often than this in the other files (`name`, `run`) says little."""
QUERY_BEFORE = 40
"""Lines before the cursor whose identifiers say what the snippets should be about."""
QUERY_AFTER = 10
DOCUMENT_REACH = 1000
HEADER_LINES = 100
"""Names used this near the cursor, or in the file's head (its imports), call for definitions."""
MAX_SNIPPETS = 64
"""Candidates handed to the prompt builder, best first; it keeps those that fit the budget."""
CHARS_PER_TOKEN = 3
"""A low estimate for code, so that the candidates handed on more than fill the budget."""
MAX_LINE_CHARS = 1000
"""What of a line the chooser reads, and a snippet shows: a longer line is minified code or data,
whose names say little, and whole it would cost its length to read and to tokenize."""
MAX_FILE_LINES = 20_000
"""Lines of a file that are cut into windows (its first): a generated file of hundreds of
thousands of lines would take seconds, and more than the memo holds, every time it is read."""
LINE_MEMO_BYTES = 16 * 2**20
"""What the memo of lines' identifiers may hold (about 50,000 lines of code)."""
WINDOW_MEMO_BYTES = 64 * 2**20
"""What the memo of files' windows may hold: choosing again after a pause re-cuts none of them."""
PAUSE_S = 1.0
"""A gap between requests this long ends a burst of typing: the choice may then change."""
MOVE_LINES = 8
"""A cursor this far from where the choice was made is somewhere else: choose again."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEFINITION = re.compile(
    r"^\s*(?:(?:export|pub|public|private|protected|static|async|abstract|final|default)\s+)*"
    r"(?:def|class|function|fn|func|struct|enum|interface|trait|type|const|let|var|val)"
    r"\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*(?::[^=\n]+)?=(?!=)"
)
"""A definition: a line that starts with a keyword and its name, or `NAME = ...` unindented."""
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
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Snippet:
    path: str
    start: int
    """The file's line where the snippet starts: snippets of one file are shown in file order."""
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ExtraContext:
    """Snippets chosen for a cursor, best first, and the comment marker of its document."""

    snippets: tuple[Snippet, ...]
    marker: str


@dataclass(frozen=True)
class _Window:
    file: OpenFile
    start: int
    end: int
    names: frozenset[str]
    defines: str | None
    """The name the window's first line defines, for a definition's window."""


def comment_marker(language_id: str, path: str = "") -> str:
    """The line comment of a document's language (by languageId, else by the file's suffix)."""
    language = language_id or _SUFFIX_LANGUAGES.get(PurePath(path).suffix.lower(), "")
    return LINE_COMMENTS.get(language, "//")


def identifiers(text: str) -> set[str]:
    return {name for name in _IDENTIFIER.findall(text) if name not in _COMMON and len(name) > 1}


def _names_bytes(names: frozenset[str]) -> int:
    return sys.getsizeof(names) + sum(map(sys.getsizeof, names))


_LINE_NAMES: BoundedMemo[str, frozenset[str]] = BoundedMemo(
    LINE_MEMO_BYTES, lambda text, names: sys.getsizeof(text) + _names_bytes(names)
)


def _line_identifiers(text: str) -> frozenset[str]:
    """A line's identifiers, remembered: choosing again after a pause re-reads the same lines."""
    text = _clipped(text)
    names = _LINE_NAMES.get(text)
    if names is None:
        names = frozenset(identifiers(text))
        _LINE_NAMES.put(text, names)
    return names


def _clipped(text: str) -> str:
    """The line cut to MAX_LINE_CHARS, its terminator kept."""
    if len(text) <= MAX_LINE_CHARS:
        return text
    return text[:MAX_LINE_CHARS] + text[len(text.rstrip("\r\n")) :]


def _nearest_uses(lines: Sequence[str], line: int) -> dict[str, int]:
    """Each name used in the file's header or near the cursor, and its least distance in lines
    from the cursor's line."""
    nearest: dict[str, int] = {}
    reach = range(max(0, line - DOCUMENT_REACH), min(len(lines), line + DOCUMENT_REACH))
    for index in sorted({*range(min(HEADER_LINES, len(lines))), *reach}):
        distance = abs(index - line)
        for name in _line_identifiers(lines[index]):
            if distance < nearest.get(name, len(lines)):
                nearest[name] = distance
    return nearest


def choose_snippets(
    lines: Sequence[str], line: int, others: Sequence[OpenFile], budget: int
) -> tuple[Snippet, ...]:
    """Snippets of `others`, best first, enough to more than fill `budget` tokens.

    `lines` and `line` are the document and the cursor's line. Two kinds of window compete:
    windows of lines that share names with the lines around the cursor (weighted Jaccard), and
    the signatures of definitions of names the document uses, the nearer the cursor the use
    the better. Windows with no claim are never chosen, nor two overlapping ones of a file.
    """
    if budget <= 0 or not others:
        return ()
    nearest = _nearest_uses(lines, line)
    if not nearest:
        return ()
    query = lines[max(0, line - QUERY_BEFORE) : line + QUERY_AFTER + 1]
    near = identifiers("".join(map(_clipped, query)))
    windows = [window for file in others for window in _windows(file)]
    frequency = Counter(name for window in windows for name in window.names & near)
    weight = {name: math.log(1 + len(windows) / (1 + frequency[name])) for name in near}
    near_weight = sum(weight.values()) or 1.0
    definitions = Counter(window.defines for window in windows if window.defines)

    def score(window: _Window) -> float:
        value = 0.0
        shared = sum(weight[name] for name in window.names & near)
        if shared:
            other = len(window.names - near) * math.log(1 + len(windows))
            value = shared / (near_weight + other)
        name = window.defines
        if name is not None and name in nearest and definitions[name] <= MAX_DEFINITIONS:
            value += DEFINITION_WEIGHT / (1 + nearest[name] / DISTANCE_SCALE)
        return value

    ranked = sorted(
        ((score(window), index, window) for index, window in enumerate(windows)),
        key=lambda item: (-item[0], item[1]),
    )
    chosen: list[_Window] = []
    snippets: list[Snippet] = []
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
        span = tuple(map(_clipped, window.file.lines[window.start : window.end]))
        estimate += sum(len(text) for text in span) // CHARS_PER_TOKEN
        snippets.append(Snippet(window.file.path, window.start, span))
    return tuple(snippets)


def _windows_bytes(key: str, windows: tuple[OpenFile, list[_Window]]) -> int:
    """The file's lines (its windows keep them) and each window with its names."""
    lines, cut = windows[0].lines, windows[1]
    text = sys.getsizeof(lines) + sum(map(sys.getsizeof, lines))
    return text + sum(sys.getsizeof(window) + _names_bytes(window.names) for window in cut)


_WINDOWS: BoundedMemo[str, tuple[OpenFile, list[_Window]]] = BoundedMemo(
    WINDOW_MEMO_BYTES, _windows_bytes
)


def forget(key: str) -> None:
    """Drop what is remembered of a file that is no longer beside any document."""
    _WINDOWS.pop(key)


def _windows(file: OpenFile) -> list[_Window]:
    """The file's windows, remembered per file: an edit replaces its old version's."""
    found = _WINDOWS.get(file.key)
    if found is not None and found[0] == file:
        return found[1]
    windows = _cut_windows(file)
    _WINDOWS.put(file.key, (file, windows))
    return windows


def _cut_windows(file: OpenFile) -> list[_Window]:
    """Windows of WINDOW_LINES every STRIDE lines, and one per definition: its signature."""
    lines = tuple(map(_clipped, file.lines[:MAX_FILE_LINES]))
    count = len(lines)
    windows = []
    for start in range(0, max(count - WINDOW_LINES, 0) + STRIDE, STRIDE):
        end = min(start + WINDOW_LINES, count)
        names = frozenset(identifiers("".join(lines[start:end])))
        if names:
            windows.append(_Window(file, start, end, names, None))
        if end == count:
            break
    for start, text in enumerate(lines):
        found = _DEFINITION.search(text)
        if found is None:
            continue
        end, depth = start + 1, _depth(text)
        while depth > 0 and end < min(count, start + MAX_SIGNATURE_LINES):
            depth += _depth(lines[end])
            end += 1
        names = frozenset(identifiers("".join(lines[start:end])))
        windows.append(_Window(file, start, end, names, found.group(1) or found.group(2)))
    return windows


def _depth(text: str) -> int:
    """How many more brackets the line opens than it closes."""
    return sum(map(text.count, "([{")) - sum(map(text.count, ")]}"))


def render(extra: ExtraContext, snippets: Sequence[Snippet]) -> str:
    """Each file's snippets under `# Path: pkg/models.py`, commented; files with the best last."""
    order = list(dict.fromkeys(snippet.path for snippet in reversed(snippets)))
    parts = []
    for path in order:
        parts.append(f"{extra.marker} Path: {path}\n")
        for snippet in sorted((s for s in snippets if s.path == path), key=lambda s: s.start):
            parts.append(_commented(snippet.lines, extra.marker))
    return "".join(parts)


def _commented(lines: Sequence[str], marker: str) -> str:
    return "".join(f"{marker} {line.rstrip()}".rstrip() + "\n" for line in lines)


def fit_snippets(
    extra: ExtraContext, budget: int, count_tokens: Callable[[str], int]
) -> tuple[str, int]:
    """The best snippets that fit in `budget` tokens, rendered, and the tokens they take."""
    kept: list[Snippet] = []
    used = 0
    paths: set[str] = set()
    for snippet in extra.snippets:
        cost = count_tokens(_commented(snippet.lines, extra.marker))
        if snippet.path not in paths:
            cost += count_tokens(f"{extra.marker} Path: {snippet.path}\n")
        if used + cost <= budget:
            kept.append(snippet)
            paths.add(snippet.path)
            used += cost
    while kept:  # the parts' counts can differ a little from the whole's
        text = render(extra, kept)
        used = count_tokens(text)
        if used <= budget:
            return text, used
        kept.pop()
    return "", 0


@dataclass
class StableChoice:
    """The last choice of snippets, kept while the user types in one place.

    It is chosen again on a switch of document, when the cursor has moved elsewhere, after a
    pause in typing, or when the files beside it change (opened, closed, edited elsewhere).
    """

    key: object = None
    line: int = -1
    last_request: float = -math.inf
    chosen: ExtraContext | None = None

    def get(
        self, key: object, line: int, now: float, choose: Callable[[], ExtraContext]
    ) -> ExtraContext | None:
        paused = now - self.last_request >= PAUSE_S
        self.last_request = now
        if key != self.key or abs(line - self.line) >= MOVE_LINES or paused:
            self.key, self.line, self.chosen = key, line, choose()
        return self.chosen
