"""Check that the package stays readable at once: no function over 60 lines, no module over 400.

    python tools/check_shape.py         # one line per offender; exit status 1 if there is any

A function's lines run from its `def` (decorators included) to its last line, docstring and
comments included: what a reader has to take in. CI runs it beside ruff and mypy.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "codellama_lsp"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def offenders(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    shown = path.relative_to(ROOT)
    found = []
    if (lines := text.count("\n")) > MAX_MODULE_LINES:
        found.append(f"{shown}: {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{shown}:{start}: {node.name} has {length} lines "
                    f"(at most {MAX_FUNCTION_LINES})"
                )
    return found


def main() -> int:
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in offenders(path)]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
