"""Single-line infilling on the held-out stdlib files, through the product's completion path.

Each case is a seeded cursor position in a held-out file (never trained on): a random non-blank
line, a random column from the line's indentation to its last non-blank character (an editor
indents a new line itself, so completions are asked for there, not inside the indentation).
The document is the file with the rest of that line removed, as if the user were typing it,
and the cursor goes through exactly what `codellama-lsp complete` and the server run:
`InfillRequest` -> `complete` (context window, Code Llama prompt, token healing, generation,
post-processing). The first line of the completion is compared with the removed rest of the
line (trailing whitespace ignored): exact match and mean edit similarity (difflib ratio),
against two trivial baselines: the empty completion, and the previous line from the same column.

    python training/evaluate_tiny_model.py --context-tokens 512  # the tiny model's own length
    python training/evaluate_tiny_model.py                       # the server's defaults
    python training/evaluate_tiny_model.py --model DIR --json out.json --token-healing off
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_tiny_model import DEFAULT_OUT, collect_files, read_data_md, split_files, stdlib_root

_WORD = re.compile(r"\w")


@dataclass
class Case:
    file: str
    line: int
    """0-based."""
    column: int
    """0-based, in characters."""
    typed: str
    """The cursor's line up to the cursor."""
    target: str
    """The rest of the line: what the completion should be."""
    previous: str
    """The previous line from the same column: a baseline that costs nothing."""
    prediction: str = ""
    error: str = ""

    @property
    def group(self) -> str:
        """The kind of cursor, for the breakdown (codec tables are generated data, not code)."""
        if self.file.startswith("encodings/"):
            return "encodings/ tables"
        if _WORD.match(self.typed[-1:]) and _WORD.match(self.target):
            return "mid-word"
        return "between words"


def sample_cases(files: dict[str, str], n: int, seed: int) -> list[Case]:
    """Seeded cursor positions; the same seed always gives the same cases."""
    rng = random.Random(f"eval-{seed}")
    candidates = [
        (name, i)
        for name, text in sorted(files.items())
        for i, line in enumerate(text.split("\n"))
        if line.strip()
    ]
    cases = []
    for name, i in rng.sample(candidates, min(n, len(candidates))):
        lines = files[name].split("\n")
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        column = rng.randrange(indent, len(line.rstrip()))
        previous = lines[i - 1] if i else ""
        cases.append(Case(name, i, column, line[:column], line[column:], previous[column:]))
    return cases


def document_lines(text: str, case: Case) -> list[str]:
    """The file's lines (as the server keeps them) with the rest of the cursor's line removed."""
    from codellama_lsp.documents.text_document import TextDocument

    lines = text.split("\n")
    lines[case.line] = case.typed
    return TextDocument("file:///heldout/" + case.file, "python", 0, "\n".join(lines)).lines


def load_completer(args: argparse.Namespace) -> Callable[[list[str], Case], str]:
    """A function from (document lines, case) to the text `complete` would insert."""
    import torch

    from codellama_lsp.completion.infill import complete
    from codellama_lsp.completion.request import InfillRequest
    from codellama_lsp.context.line_tokens import LineTokenCounter
    from codellama_lsp.engine.in_process import InProcessEngine
    from codellama_lsp.engine.model import load_model
    from codellama_lsp.settings import parse_settings

    torch.set_num_threads(args.threads)
    settings, problems = parse_settings(
        {
            "model": str(args.model),
            "device": args.device,
            "dtype": "float32",
            "order": args.order,
            "contextTokens": args.context_tokens,
            "maxNewTokens": args.max_new_tokens,
            "temperature": 0.0,
            "tokenHealing": args.token_healing == "on",
        }
    )
    if problems:
        raise SystemExit(f"evaluate_tiny_model: {problems[0]}")
    loaded = load_model(settings)
    counter = LineTokenCounter(loaded.tokenizer)

    def run(lines: list[str], case: Case) -> str:
        request = InfillRequest.at(settings, lines, case.line, case.column, "\n")
        fresh = InProcessEngine(loaded, cache_documents=1, cache_bytes=2**40)
        return complete(fresh, "held-out", request, counter, lambda: False).text

    return run


def score(predictions: list[str], targets: list[str]) -> dict[str, float]:
    pairs = [(p.rstrip(), t.rstrip()) for p, t in zip(predictions, targets, strict=True)]
    if not pairs:
        return {"exact_match": 0.0, "edit_similarity": 0.0}
    return {
        "exact_match": sum(p == t for p, t in pairs) / len(pairs),
        "edit_similarity": sum(difflib.SequenceMatcher(None, p, t).ratio() for p, t in pairs)
        / len(pairs),
    }


def scores_of(cases: list[Case]) -> dict[str, object]:
    targets = [c.target for c in cases]
    return {
        "cases": len(cases),
        "model": score([c.prediction for c in cases], targets),
        "baseline_empty": score([""] * len(cases), targets),
        "baseline_previous_line": score([c.previous for c in cases], targets),
        "empty_predictions": sum(not c.prediction.strip() for c in cases),
    }


def print_table(title: str, result: dict) -> None:
    print(f"{title} ({result['cases']} cases, {result['empty_predictions']} empty predictions)")
    for label, key in (
        ("model", "model"),
        ("baseline: empty", "baseline_empty"),
        ("baseline: previous line", "baseline_previous_line"),
    ):
        r = result[key]
        print(f"  {label:26}{100 * r['exact_match']:11.1f}%{100 * r['edit_similarity']:9.1f}%")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_OUT), help="checkpoint folder, 'tiny' or hub id")
    p.add_argument("--n", type=int, default=300, help="number of cursor positions")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed of the cursor positions")
    p.add_argument("--split-seed", type=int, default=1234, help="the training run's --seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--order", choices=["spm", "psm"], default="spm")
    p.add_argument("--context-tokens", type=int, default=2048)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--token-healing", choices=["on", "off"], default="on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the figures and every case here")
    p.add_argument("--show", type=int, default=8, help="print this many examples")
    args = p.parse_args(argv)

    files = collect_files(stdlib_root(), 300_000)
    _, held = split_files(list(files), args.split_seed, 0.03)
    data_md = Path(args.model) / "DATA.md"
    if data_md.is_file():
        trained, listed = read_data_md(data_md)
        if listed != held:
            print("warning: DATA.md's held-out list differs from the split", file=sys.stderr)
        overlap = set(trained) & set(held)
        assert not overlap, f"held-out files also trained on: {sorted(overlap)[:5]}"
    held_files = {name: files[name] for name in held}
    cases = sample_cases(held_files, args.n, args.seed)

    completer = load_completer(args)
    started = time.perf_counter()
    for case in cases:
        try:
            text = completer(document_lines(held_files[case.file], case), case)
        except ValueError as error:  # a prompt too long for the model: an empty completion
            case.error = str(error)
            text = ""
        case.prediction = text.split("\n")[0]
    seconds = time.perf_counter() - started

    groups = sorted({c.group for c in cases})
    results = {
        "model": args.model,
        "settings": {
            k: getattr(args, k)
            for k in ("order", "context_tokens", "max_new_tokens", "token_healing", "seed")
        },
        "held_out_files": len(held_files),
        "seconds": seconds,
        "errors": sum(bool(c.error) for c in cases),
        "all": scores_of(cases),
        "groups": {g: scores_of([c for c in cases if c.group == g]) for g in groups},
    }
    print(
        f"{args.model}: {len(cases)} cursor positions in {len(held_files)} held-out files, "
        f"{args.order}, token healing {args.token_healing}, {args.context_tokens} context "
        f"tokens, {seconds:.0f} s, {results['errors']} errors"
    )
    print(f"{'':28}{'exact match':>12}{'edit sim':>10}")
    print_table("all", results["all"])
    for group in groups:
        print_table(group, results["groups"][group])
    for case in cases[: args.show]:
        print(f"--- {case.file}:{case.line + 1}:{case.column + 1}")
        print(f"    typed     {case.typed[-60:]!r}")
        print(f"    target    {case.target!r}")
        print(f"    predicted {case.prediction!r}")
    if args.json:
        body = {**results, "examples": [{**asdict(c), "group": c.group} for c in cases]}
        args.json.write_text(json.dumps(body, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
