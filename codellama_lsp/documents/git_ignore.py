"""Whether git ignores a file: ignored files (build output, secrets) stay out of prompts.

The rules are read and applied here, in Python, never by running git: a repository's own
`.git/config` can name programs git runs (`core.fsmonitor`, hooks, filters), and a workspace may
come from anyone. The sources are git's: the user's global excludes file (`core.excludesFile` of
the user's own config, never the repository's), `.git/info/exclude`, then each `.gitignore` from
the repository's root down to the file's folder, later ones winning. A file in an ignored folder
is ignored (git never looks inside it), and so is anything inside `.git`. A status that cannot be
decided (an ignore file that is not a regular file, too large, or unreadable) counts as ignored:
the check fails closed.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

MAX_FILE_BYTES = 1 << 20
"""The most an ignore (or git config) file may hold; a larger one leaves its files undecided."""
CACHE_BYTES = 16 << 20
"""The most bytes of ignore files whose parsed rules stay cached, the least recently used go."""
ENTRY_BYTES = 256
"""What a cached file costs beyond its bytes (so that many empty files are bounded too)."""
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class Undecided(Exception):
    """An ignore source that cannot be read as git would: its files are not shared."""


@dataclass(frozen=True)
class Rules:
    """One ignore file's patterns, for paths relative to `base` (a folder of the repository)."""

    base: tuple[str, ...]
    patterns: Sequence[GitIgnoreSpecPattern]

    def decide(self, parts: tuple[str, ...], is_dir: bool) -> bool | None:
        """True (ignored) or False (re-included) by the last pattern naming the path itself;
        None when none does or the path is not under `base`."""
        if parts[: len(self.base)] != self.base or len(parts) == len(self.base):
            return None
        relative = "/".join(parts[len(self.base) :])
        for pattern in reversed(self.patterns):
            if _names(pattern, relative, is_dir):
                return bool(pattern.include)
        return None


def _names(pattern: GitIgnoreSpecPattern, relative: str, is_dir: bool) -> bool:
    """Whether a pattern names this very path, not only a folder above it.

    pathspec's patterns also match what lies inside a matched folder (through the group `ps_d`);
    folders are walked one by one here, so only a match of the path itself counts: a file or
    folder matched to its end, or a folder matched by a folder-only pattern (`build/`).
    """
    found = pattern.match_file(relative)
    if found is not None and found.match.groupdict().get("ps_d") is None:
        return True
    if not is_dir:
        return False
    found = pattern.match_file(relative + "/")
    return (
        found is not None
        and found.match.groupdict().get("ps_d") is not None
        and (found.match.end("ps_d") == len(relative) + 1)
    )


class GitIgnored:
    """`ignored(path)`: True when git ignores the file, or when that cannot be decided.

    Thread-safe; parsed ignore files are cached by (mtime, size), so an edited `.gitignore`
    counts at the next check.
    """

    def __init__(self, cache_bytes: int = CACHE_BYTES) -> None:
        self._cache: OrderedDict[str, tuple[tuple[int, int], int, Sequence[GitIgnoreSpecPattern]]]
        self._cache = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> bool:
        try:
            return self._ignored(Path(os.path.abspath(path)))
        except (Undecided, OSError, ValueError):  # ValueError: a NUL in a path
            return True

    def _ignored(self, path: Path) -> bool:
        if ".git" in path.parts:
            return True
        root = _repository_root(path.parent)
        if root is None:
            return False
        parts = path.relative_to(root).parts
        rules = [*self._user_rules(), *self._repository_rules(root)]
        for depth in range(1, len(parts)):  # each folder on the way, then the file
            if _decide(rules, parts[:depth], is_dir=True):
                return True
            folder = root.joinpath(*parts[:depth])
            rules.append(Rules(parts[:depth], self._patterns(folder / ".gitignore")))
        return _decide(rules, parts, is_dir=False)

    def _user_rules(self) -> list[Rules]:
        configured = _user_excludes_file()
        return [Rules((), self._patterns(configured))] if configured is not None else []

    def _repository_rules(self, root: Path) -> list[Rules]:
        common = _common_dir(root / ".git")
        return [
            Rules((), self._patterns(common / "info" / "exclude")),
            Rules((), self._patterns(root / ".gitignore")),
        ]

    def _patterns(self, file: Path) -> Sequence[GitIgnoreSpecPattern]:
        """A file's patterns, cached; none for a file that does not exist."""
        try:
            status = os.stat(file)
        except OSError as error:
            if error.errno in _ABSENT:
                return ()
            raise Undecided(str(file)) from error
        key, stamp = str(file), (status.st_mtime_ns, status.st_size)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == stamp:
                self._cache.move_to_end(key)
                return cached[2]
        data, stamp = _read(file)
        patterns = _compile(data)
        with self._lock:
            self._store(key, stamp, len(data) + ENTRY_BYTES, patterns)
        return patterns

    def _store(
        self, key: str, stamp: tuple[int, int], cost: int, patterns: Sequence[GitIgnoreSpecPattern]
    ) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._held -= old[1]
        self._cache[key] = (stamp, cost, patterns)
        self._held += cost
        while self._held > self._cache_bytes and len(self._cache) > 1:
            _, (_, freed, _) = self._cache.popitem(last=False)
            self._held -= freed

    @property
    def cached_bytes(self) -> int:
        """What the cache holds, by the cost it counts."""
        with self._lock:
            return self._held


def _decide(rules: Sequence[Rules], parts: tuple[str, ...], is_dir: bool) -> bool:
    """Ignored by the source of highest precedence (the last) that names the path."""
    for source in reversed(rules):
        decided = source.decide(parts, is_dir)
        if decided is not None:
            return decided
    return False


def _compile(data: bytes) -> Sequence[GitIgnoreSpecPattern]:
    """Patterns as git reads them (lines, a UTF-8 BOM skipped); a line pathspec refuses leaves
    the file undecided rather than silently matching less."""
    text = data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    try:
        compiled = [GitIgnoreSpecPattern(line) for line in text.splitlines()]
    except ValueError as error:
        raise Undecided(str(error)) from error
    return tuple(pattern for pattern in compiled if pattern.include is not None)


def _read(file: Path) -> tuple[bytes, tuple[int, int]]:
    """A regular file's bytes (at most MAX_FILE_BYTES) and its (mtime, size); opened
    non-blocking, so a FIFO in its place answers at once (and is refused)."""
    descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
            raise Undecided(f"{file}: not a regular file of at most {MAX_FILE_BYTES} bytes")
        with os.fdopen(os.dup(descriptor), "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE_BYTES:
        raise Undecided(f"{file}: more than {MAX_FILE_BYTES} bytes")
    return data, (status.st_mtime_ns, status.st_size)


def _repository_root(folder: Path) -> Path | None:
    """The nearest folder holding `.git` (a folder, or a file for a worktree or submodule)."""
    for candidate in (folder, *folder.parents):
        try:
            os.lstat(candidate / ".git")
        except OSError as error:
            if error.errno in _ABSENT:
                continue
            raise Undecided(str(candidate)) from error
        return candidate
    return None


def _common_dir(dot_git: Path) -> Path:
    """The git folder holding `info/exclude`: a worktree's `.git` file names its own git folder,
    whose `commondir` names the main one (a submodule's has none)."""
    if dot_git.is_dir():
        return dot_git
    first = _read(dot_git)[0].decode("utf-8", "surrogateescape").splitlines()[:1]
    if not first or not first[0].startswith("gitdir:"):
        raise Undecided(f"{dot_git}: not a gitdir file")
    git_dir = dot_git.parent / first[0].removeprefix("gitdir:").strip()
    try:
        common = _read(git_dir / "commondir")[0].decode("utf-8", "surrogateescape").strip()
    except FileNotFoundError:
        return git_dir
    return git_dir / common


def _user_excludes_file() -> Path | None:
    """`core.excludesFile` from the user's own git config (`~/.gitconfig` over the XDG one),
    else git's default `$XDG_CONFIG_HOME/git/ignore` (`~/.config/git/ignore`)."""
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    configured: str | None = None
    for config in (xdg / "git" / "config", home / ".gitconfig"):
        try:
            data = _read(config)[0]
        except FileNotFoundError:
            continue
        configured = _excludes_file_setting(data.decode("utf-8", "surrogateescape")) or configured
    if configured is None:
        return xdg / "git" / "ignore"
    return Path(os.path.expanduser(configured)) if configured else None


def _excludes_file_setting(config: str) -> str | None:
    """The last `excludesFile` of the `[core]` section of a git config text (the common forms:
    `key = value`, optionally quoted, `#`/`;` comments); None when it sets none."""
    section, found = "", None
    for raw in config.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line[1 : line.find("]")].strip().lower() if "]" in line else ""
            line = line[line.find("]") + 1 :].strip() if "]" in line else ""
        if section != "core" or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key.lower() != "excludesfile":
            continue
        if value.startswith('"') and '"' in value[1:]:
            value = value[1 : value.index('"', 1)]
        else:
            value = value.split("#", 1)[0].split(";", 1)[0].strip()
        found = value
    return found
