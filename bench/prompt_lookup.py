"""Prompt-lookup decoding against plain greedy decoding, side by side, on the shipped model.

For cursor positions at the start of stdlib lines (after the indentation), two kinds of case:
`copy`, where the same line already stands earlier in the file (the completion can copy it), and
`fresh`, where it does not. Each case builds the prompt as the server does (suffix-first, 2k
tokens of context or what the model's positions allow) and generates exactly --tokens tokens
twice, with and without drafts, from an empty cache. Reports the decode time per token of each,
their ratio, and whether the tokens were identical (they must be). Writes a Markdown table to
bench/RESULTS-prompt-lookup.md.

    python bench/prompt_lookup.py [--model tiny] [--cases 20] [--tokens 32]
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
sys.path.insert(0, str(ROOT / "bench"))

from typing_trace import machine  # noqa: E402

from codellama_lsp.completion.prepare import fit_to_model, prompt_for  # noqa: E402
from codellama_lsp.completion.request import InfillRequest  # noqa: E402
from codellama_lsp.context.line_tokens import LineTokenCounter  # noqa: E402
from codellama_lsp.engine.generation import CachedSequence, generate  # noqa: E402
from codellama_lsp.engine.model import load_model  # noqa: E402
from codellama_lsp.settings import Settings  # noqa: E402

SOURCES = ("argparse.py", "calendar.py", "difflib.py", "fractions.py", "textwrap.py", "ast.py")


def cases(per_kind: int) -> dict[str, list[tuple[list[str], int, int]]]:
    """(lines, line, column) at the start of lines that repeat a line at most 20 lines above
    (inside the context window), and of lines that do not repeat any earlier line."""
    found: dict[str, list[tuple[list[str], int, int]]] = {"copy": [], "fresh": []}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in SOURCES:
        lines = (stdlib / name).read_text(encoding="utf-8").splitlines(keepends=True)
        last_seen: dict[str, int] = {}
        for index, line in enumerate(lines):
            body = line.strip()
            if index > 100 and len(body) >= 24 and not body.startswith("#"):
                earlier = last_seen.get(body)
                kind = "fresh" if earlier is None else "copy"
                wanted = index - earlier <= 20 if earlier is not None else index % 7 == 0
                if wanted and len(found[kind]) < per_kind:
                    found[kind].append((lines, index, len(line) - len(line.lstrip())))
            last_seen[body] = index
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--cases", type=int, default=20, help="per kind")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-prompt-lookup.md"))
    args = parser.parse_args()
    loaded = load_model(Settings(model=args.model, device="cpu"))
    counter = LineTokenCounter(loaded.tokenizer)
    settings = Settings(order="spm", context_tokens=2048, max_new_tokens=args.tokens)
    rows = []
    for kind, picks in cases(args.cases).items():
        per_token: dict[bool, list[float]] = {False: [], True: []}
        identical = 0
        for lines, line, column in picks:
            request = InfillRequest.at(settings, lines, line, column, "\n")
            request = fit_to_model(request, loaded.max_positions)  # as the server does
            _, prompt = prompt_for(loaded.tokenizer, request, counter)
            outputs = {}
            for lookup in (False, True):
                started = time.perf_counter()
                out = generate(
                    loaded.model,
                    prompt,
                    CachedSequence(),
                    max_new_tokens=args.tokens,
                    stop_ids=frozenset(),
                    temperature=0.0,
                    should_stop=lambda ids: False,
                    cancelled=lambda: False,
                    prompt_lookup=lookup,
                )
                total = time.perf_counter() - started
                decode = total - out.first_token_s
                per_token[lookup].append(decode * 1000 / (len(out.ids) - 1))
                outputs[lookup] = out.ids
            identical += outputs[False] == outputs[True]
        plain, drafted = (statistics.median(per_token[k]) for k in (False, True))
        rows.append(
            f"| {kind} | {len(picks)} | {plain:.2f} | {drafted:.2f} | {plain / drafted:.2f}x | "
            f"{identical} of {len(picks)} |"
        )
    text = "\n".join(
        [
            "# Prompt-lookup decoding: `python bench/prompt_lookup.py`",
            "",
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine()}",
            f"- model: {loaded.description}; suffix-first prompts (`contextTokens` 2,048, capped "
            "to the model's positions as the server does) at the "
            f"start of stdlib lines ({', '.join(SOURCES)}); exactly {args.tokens} tokens each, "
            "from an empty cache, greedy",
            "- `copy`: the line already stands earlier in the file; `fresh`: it does not",
            "",
            "| cases | n | plain, ms per decoded token (median) | with drafts | speedup | "
            "identical tokens |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
