"""Keystroke to ghost text on a quiet machine and with one core kept busy: threads policies.

    python bench/busy_machine.py [--model tiny] [--keystrokes 60] [--rounds 2]

Replays the typing trace's `paced` phase (bench/typing_trace.py: a stdlib region typed every
80 ms, the typist waiting for the ghost text at the end of each word) into the real server over
LSP with typed-through reuse off (so every answer is the model's), four ways per round: torch's
own thread count (what the server used before the `threads` setting) and the automatic choice
(`threads` 0), each on the quiet machine and while a subprocess started here spins on one core
(stopped after the phase, and after 300 s at most).
Writes the p50 of keystroke to ghost text (client) and of the server's engine time to the
"A busy machine" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from results_section import write_section
from typing_trace import ROOT, Phase, Server, machine, pick_trace, typing_phase

SPIN = "import time\nend = time.monotonic() + 300\nwhile time.monotonic() < end:\n    pass\n"
INTERVAL_S = 0.08


async def run_phase(options: dict[str, Any], busy: bool, args: argparse.Namespace) -> dict:
    from support.lsp_session import session

    async with session(options) as client:
        server = Server(client)
        description = (await server.poll())[0]["model"]
        trace = args.trace
        spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
        try:
            if spinner is not None:
                await asyncio.sleep(0.5)  # let the scheduler see the spinning core
            phase: Phase = await typing_phase(
                server, "paced", trace, trace.region, INTERVAL_S, pause_at_words=True
            )
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return {
        "model": description,
        "latency": phase.latencies(),
        "engine": [job["engineMs"] for job in phase.completed()],
    }


def p50(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--keystrokes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("OMP_NUM_THREADS", None)  # both policies from the machine alone
    torch_default = torch.get_num_threads()
    args.trace = pick_trace(args.model, args.keystrokes, 400, None)
    print(f"trace: {args.trace.source} line {args.trace.line + 1}: {args.trace.region!r}")
    policies = {f"torch's default ({torch_default})": torch_default, "automatic (0)": 0}
    results: dict[tuple[str, bool], dict[str, list[float]]] = {}
    descriptions: dict[str, str] = {}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    for round_ in range(args.rounds):
        for busy in (False, True):
            for name, threads in policies.items():
                options = {"model": args.model, "device": "cpu", "threads": threads}
                options |= {"contextTokens": 2048, "maxNewTokens": 16, "reuseCompletions": False}
                found = asyncio.run(run_phase(options, busy, args))
                descriptions[name] = found["model"]
                merged = results.setdefault((name, busy), {"latency": [], "engine": []})
                merged["latency"] += found["latency"]
                merged["engine"] += found["engine"]
                print(
                    f"round {round_ + 1} {name} {'busy' if busy else 'quiet'}: "
                    f"{found['model']}: keystroke to ghost text p50 {p50(found['latency'])} ms "
                    f"(n={len(found['latency'])}), engine p50 {p50(found['engine'])} ms"
                )

    rows = []
    for name in policies:
        quiet, busy = results[(name, False)], results[(name, True)]
        ratio = statistics.median(busy["latency"]) / statistics.median(quiet["latency"])
        rows.append(
            f"| {name}: {descriptions[name]} | {p50(quiet['latency'])} (n={len(quiet['latency'])})"
            f" | {p50(busy['latency'])} (n={len(busy['latency'])}) | {ratio:.2f}x "
            f"| {p50(quiet['engine'])} | {p50(busy['engine'])} |"
        )
    now = datetime.datetime.now(datetime.UTC)
    body = "\n".join(
        [
            f"- date: {now:%Y-%m-%d %H:%M} UTC; command: `python bench/busy_machine.py` "
            f"({time.perf_counter() - started:.0f} s; load average {load:.1f} when it started)",
            f"- machine: {machine()}",
            f"- trace: the `paced` phase of the typing trace, {args.keystrokes} characters of "
            f"{args.trace.source.name} line {args.trace.line + 1} typed every 80 ms, "
            f"`{args.model}` model, `maxNewTokens` 16, `reuseCompletions` off; busy: a Python "
            f"process spinning on one core for the whole phase; {args.rounds} round(s), pooled",
            "",
            "| threads | keystroke to ghost text p50, ms, quiet | busy | busy / quiet "
            "| engine p50, ms, quiet | busy |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "Goal: busy within 1.5x of quiet, and the quiet figure no worse than torch's default. "
            "Quiet means no process of the benchmark's own: other programs on the machine run as "
            "they do (the load average above).",
        ]
    )
    write_section(Path(args.out), "A busy machine", body)
    print(body)


if __name__ == "__main__":
    main()
