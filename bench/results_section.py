"""The sections of bench/RESULTS.md: each benchmark rewrites its own and keeps the others.

The typing trace writes the page's head (its title and table); the other benchmarks each own one
`## ` section below it, so rerunning one benchmark never drops another's figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def sections(text: str) -> dict[str, str]:
    """The `## ` sections of `text`, by heading, in order, each with its heading line."""
    found: dict[str, str] = {}
    heading = None
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            heading = line[3:].strip()
            found[heading] = ""
        if heading is not None:
            found[heading] += line
    return found


def write_head(path: Path, head: str) -> None:
    """Write `head` as the page's start, keeping the sections the file already has."""
    kept = sections(path.read_text(encoding="utf-8")) if path.exists() else {}
    path.write_text(_joined(head, kept.values()), encoding="utf-8")


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or add, at the end) the section `## heading` of `path` with `body`."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    kept = sections(text)
    head = text.split("\n## ", 1)[0] if not text.startswith("## ") else ""
    kept[heading] = f"## {heading}\n\n{body.strip()}\n"
    path.write_text(_joined(head, kept.values()), encoding="utf-8")


def _joined(head: str, parts: Iterable[str]) -> str:
    pieces = [head.rstrip("\n")] if head.strip() else []
    pieces += [part.rstrip("\n") for part in parts]
    return "\n\n".join(pieces) + "\n"
