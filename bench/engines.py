"""The engines side by side: the same typing trace into the language server, generating in-process,
through llama-server's `/completion` (`llama.cpp`) and through its `/v1/completions` (`openai`).

Starts one `llama-server` (../shared/llama.cpp, a GGUF of the same checkpoint made by make-gguf)
with one CPU thread, and runs the language server with torch on one thread too, so that neither
engine gets more of the machine. Per engine, on a fresh document: the trace typed one character
every --interval-ms, each followed by an automatic inline completion, the typist pausing at the
end of each word until the ghost text arrives (typing_trace.py's `paced` phase: enough completed
requests to compare); then a 40-key burst at the same pace without pauses. Then N
editors (N = 1, 4, 8: one language server each) typing the trace at once into one llama-server
with 8 slots. Writes bench/RESULTS-engines.md.

    python bench/engines.py                 # the shipped tiny model, about 5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from typing_trace import (  # noqa: E402
    BURST,
    Phase,
    Server,
    machine,
    median,
    pair,
    pick_trace,
    typing_phase,
)

LLAMA_CPP = ROOT.parent / "shared" / "llama.cpp"
SLOTS = 8
EDITORS = (1, 4, 8)


def start_llama_server(gguf: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx2 as httpx

    command = [str(LLAMA_CPP / "bin" / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1"]
    command += ["--port", str(port), "-t", "1", "-np", str(SLOTS), "-c", str(SLOTS * 512)]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("llama-server did not start")


def per_keystroke(phase: Phase) -> tuple[list[float], list[float]]:
    """Keystroke-to-ghost-text latencies (ms), and prompt tokens evaluated per completed job."""
    return phase.latencies(), [float(job["prefilled"]) for job in phase.completed()]


async def one_engine(name: str, options: dict[str, Any], trace: Any, interval: float) -> dict:
    from support.lsp_session import session

    async with session(options) as client:
        server = Server(client)
        first, _, _ = await server.poll()
        typed = await typing_phase(server, "paced", trace, trace.region, interval, True)
        burst = await typing_phase(server, "burst", trace, trace.region[:BURST], interval, False)
    latencies, prefilled = per_keystroke(typed)
    print(f"[{name}] {first['model']}: trace p50 {median(latencies)} ms")
    return {
        "model": first["model"],
        "latency": latencies,
        "prefilled": prefilled,
        "completed": len(typed.completed()),
        "burst_waste": burst.waste(),
        "burst_delta": burst.delta,
    }


async def editors_at_once(count: int, options: dict[str, Any], trace: Any, interval: float):
    from support.lsp_session import session

    async def editor() -> list[float]:
        async with session(options) as client:
            server = Server(client)
            await server.poll()
            typed = await typing_phase(server, "paced", trace, trace.region, interval, True)
            return typed.latencies()

    runs = await asyncio.gather(*(editor() for _ in range(count)))
    return [value for run in runs for value in run]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--keystrokes", type=int, default=40)
    parser.add_argument("--interval-ms", type=int, default=80)
    parser.add_argument("--context-tokens", type=int, default=400)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS-engines.md"))
    args = parser.parse_args()
    if not (LLAMA_CPP / "bin" / "llama-server").is_file():
        raise SystemExit(f"engines.py needs llama.cpp's llama-server in {LLAMA_CPP}")
    os.environ.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    started = time.perf_counter()
    interval = args.interval_ms / 1000
    trace = pick_trace(args.model, args.keystrokes, args.context_tokens, None)
    common = {
        "model": args.model,
        "contextTokens": args.context_tokens,
        "maxNewTokens": args.max_new_tokens,
        "tokenHealing": False,  # remote engines do not heal: the same prompts everywhere
        "device": "cpu",
    }
    url = f"http://127.0.0.1:{args.port}"
    engines = {
        "in-process": {"engine": "transformers"},
        "llama.cpp": {"engine": "llama.cpp", "engineUrl": url},
        "openai": {"engine": "openai", "engineUrl": url + "/v1"},
    }
    with tempfile.TemporaryDirectory(prefix="codellama-engines-") as scratch:
        gguf = Path(scratch) / "model.gguf"
        folder = args.model if args.model != "tiny" else ROOT / "codellama_lsp" / "models" / "tiny"
        subprocess.run(
            [str(LLAMA_CPP / "make-gguf"), str(folder), str(gguf)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHON": sys.executable},
        )
        server = start_llama_server(gguf, args.port, Path(scratch) / "server.log")
        try:
            results = {
                name: asyncio.run(one_engine(name, {**common, **extra}, trace, interval))
                for name, extra in engines.items()
            }
            crowd = {
                count: asyncio.run(
                    editors_at_once(count, {**common, **engines["llama.cpp"]}, trace, interval)
                )
                for count in EDITORS
            }
        finally:
            server.kill()
    out = Path(args.out)
    out.write_text(report(args, trace, results, crowd, time.perf_counter() - started))
    print(out.read_text())


def report(args: Any, trace: Any, results: dict, crowd: dict, seconds: float) -> str:
    rows = []
    for name, result in results.items():
        delta = result["burst_delta"]
        waste = result["burst_waste"]
        wasted = delta.get("wastedTokens", 0)
        made = wasted + delta.get("generatedTokens", 0)
        rows.append(
            f"| {name} | {pair(result['latency'], 0, ' ms')} | "
            f"{pair(result['prefilled'], 0)} | {result['completed']} | "
            f"{wasted} of {made}"
            f" ({'-' if waste is None else f'{waste:.0%}'}) |"
        )
    crowd_rows = [f"| {count} | {pair(values, 0, ' ms')} |" for count, values in crowd.items()]
    return "\n".join(
        [
            "# Engines side by side",
            "",
            f"`python bench/engines.py` ({datetime.date.today()}, {seconds:.0f} s): "
            f"{machine()}. The language server's torch and llama-server (`-t 1`, "
            f"`-np {SLOTS}`, `-c {SLOTS * 512}`, f32 GGUF of the same checkpoint) each on "
            "**one CPU thread**; the machine was shared with other work, so compare the rows "
            "with each other, not with other files.",
            "",
            f"Model `{args.model}`; trace: {trace.source.name} line {trace.line + 1}, "
            f"{len(trace.region)} keystrokes every {args.interval_ms} ms, each followed by an "
            "automatic inline completion, pausing at the end of each word until the ghost text "
            "arrives (the burst: 40 keys without pauses); "
            f"contextTokens {args.context_tokens}, maxNewTokens "
            f"{args.max_new_tokens}, token healing off (as remote engines have it).",
            "",
            "| engine | keystroke to ghost text p50 / p95 | prompt tokens evaluated per "
            "completion p50 / p95 | completed | wasted tokens, 40-key burst |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Prompt tokens evaluated: in-process, what the worker prefilled; remote, the "
            "server's own `timings.prompt_n` (llama.cpp) or `usage` less `cached_tokens` "
            "(openai). llama-server reports `usage` on /v1/completions only at the end of an "
            "answer: one the early stop closed counts as the whole prompt, so the openai row is "
            "an upper bound (vLLM reports it on every chunk with `continuous_usage_stats`). "
            "Wasted tokens: generated for requests then superseded, as this side "
            "received them (a server may have made a few more before it saw the stream close).",
            "",
            f"N editors (one language server each) typing the same trace at once into one "
            f"llama-server with {SLOTS} slots, `llama.cpp` engine:",
            "",
            "| editors | keystroke to ghost text p50 / p95 |",
            "| --- | --- |",
            *crowd_rows,
            "",
        ]
    )


if __name__ == "__main__":
    main()
