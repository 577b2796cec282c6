"""Whether git ignores a file: ignored files (build output, secrets) stay out of prompts.

Asks `git check-ignore`, which applies every rule git does (nested .gitignore files,
.git/info/exclude, the user's global excludes), once per file. Without git, or outside a
repository, nothing is ignored.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

TIMEOUT_S = 5


class GitIgnored:
    """`ignored(path)`, remembered per path: a file's status rarely changes while it is open."""

    def __init__(self) -> None:
        self._memo: dict[Path, bool] = {}

    def __call__(self, path: Path) -> bool:
        known = self._memo.get(path)
        if known is None:
            known = self._memo[path] = _ask_git(path)
        return known


def _ask_git(path: Path) -> bool:
    try:
        done = subprocess.run(
            ["git", "check-ignore", "--quiet", "--", path.name],
            cwd=path.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, ValueError, subprocess.SubprocessError):  # ValueError: a NUL in the path
        return False
    return done.returncode == 0
