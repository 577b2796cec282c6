"""Cross-file benchmark: does the extra context bring the definition of a name used at the cursor?

Cases come from real multi-file Python packages installed in the running environment that the
shipped tiny model never saw (it was trained on the standard library only): pygls, lsprotocol,
cattrs, attrs, click, jinja2, markdown_it, anyio, packaging. A case is a line that uses a name
(not on an import line) that the module imports from another module of the same package, where
that name is defined at the top level of exactly one module. The cursor is at the start of the
name; the "open" files are the defining module plus others of the package, 3 to 10 in all
(seeded). The selection is the server's own (`codellama_lsp.context.extra_context`), at its
defaults.

    python bench/cross_file.py                    # a few minutes on one thread
    python bench/cross_file.py --cases 40 --typing 4 --out /tmp/r.md   # quicker

Reports:
  recall    share of cases whose definition line is in the prompt's extra context, by budget
            (tokens of Code Llama's tokenizer when ../shared has it, else the tiny model's)
  quality   the tiny model's exact match and edit similarity of the rest of the line, with and
            without extra context (`--model tiny`, its 512 positions: the extra context gets
            at most half of the prompt)
  cost      prompt tokens, and while typing the line one character at a time (a keystroke
            every 100 ms, a KV cache per document as the server keeps it, the choice kept as
            the server keeps it): prefill per keystroke and keystroke-to-completion p50
"""

from __future__ import annotations

import argparse
import ast
import datetime
import difflib
import importlib.util
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codellama_lsp.checkpoint.tokenizer import FimTokenizer, load_tokenizer  # noqa: E402
from codellama_lsp.completion.request import InfillRequest  # noqa: E402
from codellama_lsp.context.extra_context import (  # noqa: E402
    ExtraContext,
    OpenFile,
    StableChoice,
    choose_snippets,
    fit_snippets,
)
from codellama_lsp.context.line_tokens import LineTokenCounter  # noqa: E402
from codellama_lsp.settings import Settings  # noqa: E402

PACKAGES = (
    "pygls",
    "lsprotocol",
    "cattrs",
    "attr",
    "click",
    "jinja2",
    "markdown_it",
    "anyio",
    "packaging",
)
BUDGETS = (256, 512, 1024)
SHARED_TOKENIZER = ROOT.parent / "shared" / "codellama-7b-hf-tokenizer"
MIN_NAME = 4
KEYSTROKE_S = 0.1


@dataclass(frozen=True)
class Case:
    package: str
    path: str
    """Of the file being edited, relative to the package's parent folder."""
    lines: list[str]
    """The document, its cursor line cut at the cursor."""
    line: int
    column: int
    name: str
    target: str
    """The rest of the line from the cursor: what a perfect completion inserts."""
    definition: str
    """The path of the defining module (as shown in the prompt) and its definition line."""
    definition_line: str
    others: list[OpenFile]


def package_files(package: str) -> dict[str, list[str]]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return {}
    root = Path(next(iter(spec.submodule_search_locations)))
    files = {}
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.parts or "__pycache__" in path.parts:
            continue
        files[path.relative_to(root.parent).as_posix()] = path.read_text(
            encoding="utf-8"
        ).splitlines(keepends=True)
    return files


def top_level_names(tree: ast.Module) -> dict[str, int]:
    """Module-level definitions: name -> 0-based line."""
    names: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node.lineno - 1
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.lineno - 1
    return names


def build_cases(per_package: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    for package in PACKAGES:
        files = package_files(package)
        trees = {}
        for path, lines in files.items():
            try:
                trees[path] = ast.parse("".join(lines))
            except SyntaxError:
                continue
        defined: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for path, tree in trees.items():
            for name, line in top_level_names(tree).items():
                defined[name].append((path, line))
        found: list[tuple[str, int, int, str, str, int]] = []
        for path, tree in trees.items():
            own = top_level_names(tree)
            imported = {
                alias.asname or alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                for alias in node.names
            }
            import_lines = {
                line
                for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for line in range(node.lineno - 1, (node.end_lineno or node.lineno))
            }
            seen: set[str] = set()
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)):
                    continue
                name = node.id
                if (
                    len(name) < MIN_NAME
                    or name.startswith("__")
                    or name in own
                    or name not in imported
                    or name in seen
                    or len(defined.get(name, [])) != 1
                    or defined[name][0][0] == path
                    or node.lineno - 1 in import_lines
                    or node.lineno != node.end_lineno
                ):
                    continue
                seen.add(name)
                home, home_line = defined[name][0]
                found.append((path, node.lineno - 1, node.col_offset, name, home, home_line))
        rng.shuffle(found)
        for path, line, column, name, home, home_line in found[:per_package]:
            lines = files[path]
            pool = [other for other in files if other not in (path, home) and files[other]]
            count = rng.randint(3, 10)
            chosen = [home, *rng.sample(pool, min(count - 1, len(pool)))]
            rng.shuffle(chosen)
            others = [OpenFile(other, other, tuple(files[other])) for other in chosen]
            target = lines[line].rstrip("\r\n")[column:]
            cut = [*lines[:line], lines[line][:column] + "\n", *lines[line + 1 :]]
            cases.append(
                Case(
                    package,
                    path,
                    cut,
                    line,
                    column,
                    name,
                    target,
                    home,
                    files[home][home_line].rstrip("\r\n"),
                    others,
                )
            )
    return cases


def snippets_for(case: Case, budget: int) -> ExtraContext:
    return ExtraContext(choose_snippets(case.lines, case.line, case.others, budget), "#")


def retrieved(case: Case, text: str) -> bool:
    """Whether `text` (the extra context) holds the definition line under its file's path."""
    for block in text.split("# Path: ")[1:]:
        path, _, body = block.partition("\n")
        if path == case.definition and f"# {case.definition_line}".rstrip() + "\n" in body:
            return True
    return False


def recall(cases: list[Case], tokenizer: FimTokenizer) -> dict[int, float]:
    count = LineTokenCounter(tokenizer)
    shares = {}
    for budget in BUDGETS:
        hits = 0
        for case in cases:
            text, used = fit_snippets(snippets_for(case, budget), budget, count)
            assert used <= budget
            hits += retrieved(case, text)
        shares[budget] = hits / len(cases)
    return shares


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


@dataclass
class Quality:
    exact: float
    similarity: float
    name_first: float
    prompt_tokens: float
    extra_tokens: float
    in_prompt: float
    """The share of cases whose definition line is in the prompt."""


def quality(loaded, cases: list[Case], budget: int, max_new: int) -> Quality:
    from codellama_lsp.completion.infill import complete
    from codellama_lsp.completion.prepare import fit_to_model, prompt_for
    from codellama_lsp.engine.in_process import InProcessEngine

    count = LineTokenCounter(loaded.tokenizer)
    settings = Settings(
        model="tiny", max_new_tokens=max_new, extra_context_tokens=budget, context_tokens=2048
    )
    exact, similar, named, tokens, extra, found = [], [], [], [], [], []
    for case in cases:
        snippets = snippets_for(case, budget) if budget else None
        request = InfillRequest.at(settings, case.lines, case.line, case.column, "\n", snippets)
        fitted = fit_to_model(request, loaded.max_positions)
        _, ids = prompt_for(loaded.tokenizer, fitted, count)
        found.append(retrieved(case, loaded.tokenizer.decode(ids)))
        extra.append(
            fit_snippets(snippets, min(budget, fitted.context_tokens // 2), count)[1]
            if snippets
            else 0
        )
        fresh = InProcessEngine(loaded, cache_documents=1, cache_bytes=2**40)
        infill = complete(fresh, case.path, request, count, lambda: False)
        got = first_line(infill.text)
        exact.append(got.strip() == case.target.strip())
        similar.append(difflib.SequenceMatcher(None, got.strip(), case.target.strip()).ratio())
        named.append(got.startswith(case.name))
        tokens.append(infill.prompt_tokens)
    return Quality(
        statistics.mean(exact),
        statistics.mean(similar),
        statistics.mean(named),
        statistics.mean(tokens),
        statistics.mean(extra),
        statistics.mean(found),
    )


@dataclass
class Typing:
    prefill: list[int]
    latency_ms: list[float]


def typing(loaded, cases: list[Case], budget: int, max_new: int) -> Typing:
    """Each case's line typed from the cursor one character at a time, as the server runs it."""
    from codellama_lsp.completion.infill import complete
    from codellama_lsp.engine.in_process import InProcessEngine

    count = LineTokenCounter(loaded.tokenizer)
    settings = Settings(
        model="tiny", max_new_tokens=max_new, extra_context_tokens=budget, context_tokens=2048
    )
    result = Typing([], [])
    for case in cases:
        engine, choice, clock = InProcessEngine(loaded, 1, 2**40), StableChoice(), 0.0
        head = case.lines[case.line][: case.column]
        for typed in range(len(case.target) + 1):
            text = head + case.target[:typed]
            lines = [*case.lines[: case.line], text + "\n", *case.lines[case.line + 1 :]]
            snippets = None
            if budget:
                snippets = choice.get(
                    case.path,
                    case.line,
                    clock,
                    lambda lines=lines, case=case: ExtraContext(
                        choose_snippets(lines, case.line, case.others, budget), "#"
                    ),
                )
            request = InfillRequest.at(settings, lines, case.line, len(text), "\n", snippets)
            started = time.perf_counter()
            infill = complete(engine, case.path, request, count, lambda: False)
            if typed:  # the first request is the file's first: a full prefill either way
                result.prefill.append(infill.prefilled)
                result.latency_ms.append((time.perf_counter() - started) * 1000)
            clock += KEYSTROKE_S
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=25, help="cases per package (default 25)")
    parser.add_argument("--quality", type=int, default=60, help="cases run through the model")
    parser.add_argument("--typing", type=int, default=6, help="cases typed one key at a time")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-cross-file.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    cases = build_cases(args.cases, args.seed)
    by_package = defaultdict(int)
    for case in cases:
        by_package[case.package] += 1
    print(f"{len(cases)} cases: {dict(by_package)}")

    if (SHARED_TOKENIZER / "tokenizer.json").is_file():
        counting, counted_by = load_tokenizer(str(SHARED_TOKENIZER)), "Code Llama's tokenizer"
    else:
        counting, counted_by = load_tokenizer("tiny"), "the tiny model's tokenizer"
    shares = recall(cases, counting)
    for budget, share in shares.items():
        print(f"recall at {budget}: {share:.0%}")
    chosen_s = time.perf_counter()
    for case in cases:
        snippets_for(case, 512)
    choose_ms = (time.perf_counter() - chosen_s) * 1000 / len(cases)

    from codellama_lsp.engine.model import load_model

    loaded = load_model(Settings(model="tiny", device="cpu"))
    rng = random.Random(args.seed)
    sample = rng.sample(cases, min(args.quality, len(cases)))
    tiny_shares = recall(sample, loaded.tokenizer)
    with_budget = 512
    qualities = {
        0: quality(loaded, sample, 0, args.max_new_tokens),
        with_budget: quality(loaded, sample, with_budget, args.max_new_tokens),
    }
    for budget, figures in qualities.items():
        print(f"quality with extraContextTokens {budget}: {figures}")
    typed_cases = rng.sample(sample, min(args.typing, len(sample)))
    typings = {
        budget: typing(loaded, typed_cases, budget, args.max_new_tokens)
        for budget in (0, with_budget)
    }
    for budget, figures in typings.items():
        prefill, p50 = statistics.median(figures.prefill), statistics.median(figures.latency_ms)
        print(f"typing, extraContextTokens {budget}: prefill median {prefill}, p50 {p50:.1f} ms")
    elapsed = time.perf_counter() - started
    write_report(
        args, cases, shares, counted_by, tiny_shares, qualities, typings, choose_ms, elapsed
    )
    print(f"wrote {args.out} in {elapsed:.0f} s")


def write_report(
    args, cases, shares, counted_by, tiny_shares, qualities, typings, choose_ms, elapsed
) -> None:
    import platform

    import torch

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    packages = defaultdict(int)
    for case in cases:
        packages[case.package] += 1
    opened = statistics.mean(len(case.others) for case in cases)
    lines = [
        "# Cross-file context: results",
        "",
        f"`python bench/cross_file.py` (see bench/README.md), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d}, {machine}, "
        f"torch {torch.__version__}, 1 thread, {elapsed:.0f} s in all.",
        "",
        f"{len(cases)} cases from {len(packages)} installed packages "
        f"({', '.join(f'{name} {count}' for name, count in packages.items())}): a line that uses "
        "a name imported from another module of the package (defined there, at the top level, "
        "in that module only), cursor at the start of the name; "
        f"{opened:.1f} other files of the package open on average (3 to 10, the defining one "
        "among them). Seed 0.",
        "",
        "## Retrieval recall",
        "",
        "The share of cases whose definition line is in the prompt's extra context (under its "
        f"file's path), by `extraContextTokens`; tokens counted by {counted_by}. "
        f"Choosing costs {choose_ms:.1f} ms a case (one thread, all files of the case).",
        "",
        "| extraContextTokens | recall |",
        "| --- | --- |",
        *(f"| {budget} | {share:.0%} |" for budget, share in shares.items()),
        "",
        f"Counted by the tiny model's tokenizer, on the {args.quality} cases of the quality "
        "sample: "
        + ", ".join(f"{share:.0%} at {budget}" for budget, share in tiny_shares.items())
        + ".",
        "",
        "## The tiny model, with and without",
        "",
        f"{args.quality} cases; the rest of the line after the cursor is the target (the "
        "completion's first line, stripped). The tiny model has 512 positions: with "
        f"`maxNewTokens` {args.max_new_tokens} the prompt is at most "
        f"{512 - args.max_new_tokens - 1} tokens, and the extra context gets at most half.",
        "",
        "| extraContextTokens | exact match | edit similarity | starts with the name "
        "| prompt tokens (mean) | of which extra context | definition in the prompt |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {budget} | {q.exact:.1%} | {q.similarity:.3f} | {q.name_first:.1%} "
            f"| {q.prompt_tokens:.0f} | {q.extra_tokens:.0f} | {q.in_prompt:.0%} |"
            for budget, q in qualities.items()
        ),
        "",
        "## Cost while typing",
        "",
        f"{args.typing} cases, the target typed one character at a time from the cursor (a "
        f"keystroke every {KEYSTROKE_S * 1000:.0f} ms of simulated time), each keystroke a "
        "completion through `complete()` with one KV cache per document, the extra context "
        "chosen as the server chooses it (`StableChoice`: kept while typing in one place). "
        "In process, one thread, the tiny model; the first request of each case (a full "
        "prefill either way) is left out.",
        "",
        "| extraContextTokens | keystrokes | prefill per keystroke (median / mean) "
        "| keystroke to completion p50 |",
        "| --- | --- | --- | --- |",
        *(
            f"| {budget} | {len(t.prefill)} | {statistics.median(t.prefill):.0f} / "
            f"{statistics.mean(t.prefill):.1f} | {statistics.median(t.latency_ms):.1f} ms |"
            for budget, t in typings.items()
        ),
        "",
    ]
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
