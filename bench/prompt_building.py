"""Prompt building per keystroke at 4k context on a 10k-line file: whole window vs per-line ids.

    python bench/prompt_building.py [--tokenizer DIR] [--context-tokens 4096] [--keystrokes 60]

Types a line of code one character at a time into the middle of a 10,000-line file made of real
standard-library modules and, after every keystroke, builds the suffix-first prompt two ways on
the same document, one after the other: `before`, the window tokenized whole (what the server
did until now: `fit_window` with remembered line counts, then `build_prompt` on the window's
text) and `after`, `prompt_for` (per-line ids kept between keystrokes, only changed lines
tokenized). Checks that both give the same ids and writes p50/p95 of each to the
"Prompt building" section of bench/RESULTS.md. Code Llama's tokenizer from ../shared when
present (else the shipped model's), as the server would load it.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_TOKENIZER = ROOT.parent / "shared" / "codellama-7b-hf-tokenizer"
LINES = 10_000
TYPED = "result = self._normalize(value, limit=limit) + offset  # done"

from results_section import write_section  # noqa: E402  (bench/, next to this script)


def ten_thousand_lines() -> tuple[list[str], list[str]]:
    """10,000 lines of standard-library modules (in name order), and the modules used."""
    lines: list[str] = []
    used: list[str] = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines += text.splitlines(keepends=True)
        used.append(path.name)
        if len(lines) >= LINES:
            break
    lines = lines[:LINES]
    lines[-1] = lines[-1].rstrip("\n")
    return lines, used


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer
    from codellama_lsp.completion.prepare import prompt_for
    from codellama_lsp.completion.request import InfillRequest
    from codellama_lsp.context.line_tokens import LineTokenCounter
    from codellama_lsp.context.prompt import build_prompt
    from codellama_lsp.context.window import fit_window
    from codellama_lsp.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", help="default: ../shared's Code Llama tokenizer, or tiny")
    parser.add_argument("--context-tokens", type=int, default=4096)
    parser.add_argument("--keystrokes", type=int, default=len(TYPED))
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    name = args.tokenizer or (str(SHARED_TOKENIZER) if SHARED_TOKENIZER.is_dir() else "tiny")
    tokenizer = load_tokenizer(name)

    lines, used = ten_thousand_lines()
    line = LINES // 2
    lines.insert(line, "\n")
    before_counter, after_counter = LineTokenCounter(tokenizer), LineTokenCounter(tokenizer)
    settings = Settings(order="spm", context_tokens=args.context_tokens, max_new_tokens=16)
    timings: dict[str, list[float]] = {"before": [], "after": []}
    prompt_tokens: list[int] = []
    # One unmeasured build each: the window's lines are tokenized once when a file is opened.
    for column in range(args.keystrokes + 1):
        lines[line] = TYPED[:column] + "\n"
        request = InfillRequest.at(settings, lines, line, column, "\n")
        started = time.perf_counter()
        window = fit_window(lines, line, column, args.context_tokens, before_counter)
        whole = build_prompt(tokenizer, window.prefix, window.suffix, "spm", args.context_tokens)
        middle = time.perf_counter()
        _, per_line = prompt_for(tokenizer, request, after_counter)
        ended = time.perf_counter()
        if per_line != whole:
            raise SystemExit(f"prompt_building.py: the ids differ after {column} keystrokes")
        if column:
            timings["before"].append((middle - started) * 1000)
            timings["after"].append((ended - middle) * 1000)
            prompt_tokens.append(len(per_line))

    def figure(key: str) -> str:
        values = timings[key]
        return f"{statistics.median(values):.2f} / {percentile(values, 0.95):.2f}"

    speedup = statistics.median(timings["before"]) / statistics.median(timings["after"])
    after_p50 = statistics.median(timings["after"])
    now = datetime.datetime.now(datetime.UTC)
    body = "\n".join(
        [
            f"- date: {now:%Y-%m-%d %H:%M} UTC; command: `python bench/prompt_building.py`",
            f"- tokenizer: {tokenizer.source}; one Python thread, machine as in the head",
            f"- document: {LINES:,} lines of the standard library ({used[0]} to {used[-1]}), "
            f"cursor on line {line + 1}, {args.keystrokes} characters typed "
            f"(`{TYPED[: args.keystrokes]}`), after each a suffix-first prompt of at most "
            f"{args.context_tokens} tokens ({min(prompt_tokens)} to {max(prompt_tokens)}); "
            "the same ids both ways on every keystroke",
            "",
            "| prompt building per keystroke, ms, p50 / p95 | before: window tokenized whole "
            "| after: per-line ids kept | target |",
            "| --- | ---: | ---: | --- |",
            f"| {args.context_tokens}-token window, {LINES:,}-line file | {figure('before')} "
            f"| {figure('after')} | p50 ≤ 1 ms: **{'met' if after_p50 <= 1 else 'not met'}** |",
            "",
            f"After is {speedup:.1f}x faster at the median. Both fit the same window with "
            "remembered line counts; before, the window's text is then tokenized whole; after, "
            "the prompt is assembled from each line's kept ids, and only the typed line and the "
            "prefix's first line (which carries the implied leading space) are tokenized.",
        ]
    )
    write_section(Path(args.out), "Prompt building", body)
    print(body)


if __name__ == "__main__":
    sys.exit(main())
