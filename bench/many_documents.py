"""50 open documents: the memory each one costs the server, and completing after a switch.

    python bench/many_documents.py [--model random|tiny|PATH] [--documents 50]

Opens 50 standard-library modules (the first, in name order, of 300 to 3,000 lines) in the real
server over LSP, with the typing trace's model (by default its random-weight Llama at 2k context,
see bench/README.md; `--model tiny`: the shipped model, whose 512 positions cap the prompt) and
reuse off, so every answer is the model's, and measures, twice side by side,
with `cacheDocuments` 8 (the old default) and with the current defaults:

- memory: the server's resident set before opening, after opening all (the document store), and
  after completions in every document (plus KV caches, remembered suggestions, line ids);
- latency: a first pass completes once in each document (its first completion ever), then a
  second pass visits each document in turn: one typed character and an invoked completion
  right after switching from the previous document ("switch"), then another character and
  completion in the same document ("warm"). Keystroke to answer as the client sees it.

Writes the "Many open documents" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from results_section import write_section
from typing_trace import ROOT, Editor, Server, build_random_model, machine, settle

TYPED = "value = 1  # "
MODEL_NAME = "the typing trace's random-weight Llama: hidden 256, 4 layers, 1,000-piece vocabulary"


def sources(count: int) -> list[Path]:
    found = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        lines = path.read_text(encoding="utf-8", errors="replace").count("\n")
        if 300 <= lines <= 3000:
            found.append(path)
        if len(found) == count:
            return found
    raise SystemExit(f"many_documents.py: fewer than {count} stdlib modules of 300-3000 lines")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("many_documents.py: no VmRSS in /proc (Linux only)")


async def complete_once(server: Server, editor: Editor, char: str) -> dict[str, float]:
    """Type `char`, ask at once, and return the client's latency and the server's job."""
    at = editor.type(char)
    record = editor.request(automatic=False, keystroke=at)
    await settle([record])
    assert record.answered is not None
    _, _, jobs = await server.poll()
    job = [job for job in jobs if job["status"] == "completed"][-1]
    return {
        "latency": (record.answered - at) * 1000,
        "engine": job["engineMs"],
        "prefilled": job["prefilled"],
    }


async def run_config(options: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    from support.lsp_session import open_document, session

    async with session(options) as client:
        server = Server(client)
        stats, _, _ = await server.poll()
        pid = client._server.pid  # the server subprocess
        await asyncio.sleep(1)
        memory = {"start": resident_mb(pid)}
        editors = []
        total_bytes = 0
        for index, path in enumerate(paths):
            text = path.read_text(encoding="utf-8", errors="replace")
            total_bytes += len(text.encode("utf-8"))
            lines = text.splitlines()
            line = len(lines) // 2
            uri = f"file:///bench/{index}/{path.name}"
            open_document(client, uri, text)
            editors.append(Editor(client, uri, line, len(lines[line])))
        await server.poll()
        memory["opened"] = resident_mb(pid)
        for editor in editors:  # the first completion in each document
            await complete_once(server, editor, " ")
        switch, warm = [], []
        for editor in editors:
            switch.append(await complete_once(server, editor, TYPED[0]))
            warm.append(await complete_once(server, editor, TYPED[1]))
        stats, _, _ = await server.poll()
        memory["completed"] = resident_mb(pid)
    return {
        "model": stats["model"],
        "memory": memory,
        "text_mb": total_bytes / 2**20,
        "switch": switch,
        "warm": warm,
        "cached": (stats["cachedDocuments"], stats["cacheBytes"] / 2**20),
    }


def p50(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random", help="random (default), tiny, or a folder")
    parser.add_argument("--documents", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    args.started, args.load = time.perf_counter(), os.getloadavg()[0]
    os.environ["HF_HUB_OFFLINE"] = "1"
    paths = sources(args.documents)
    with tempfile.TemporaryDirectory(prefix="codellama-bench-") as scratch:
        model = args.model
        if model == "random":
            model = str(build_random_model(Path(scratch) / "model"))
        results = run_all(model, args.model, paths)
    write_report(args, paths, results)


def run_all(model: str, label: str, paths: list[Path]) -> dict[str, dict[str, Any]]:
    from codellama_lsp.settings import Settings

    base = {"model": model, "device": "cpu", "maxNewTokens": 16, "reuseCompletions": False}
    configs = {
        "cacheDocuments 8 (old default)": {**base, "cacheDocuments": 8},
        f"defaults (cacheDocuments {Settings.cache_documents}, cacheMegabytes "
        f"{Settings.cache_megabytes})": base,
    }
    results = {}
    for name, options in configs.items():
        results[name] = found = asyncio.run(run_config(options, paths))
        found["model"] = found["model"].replace(model, label)
        print(
            f"{name}: {found['model']}: switch p50 {p50(found['switch'], 'latency'):.1f} ms, "
            f"warm p50 {p50(found['warm'], 'latency'):.1f} ms, memory {found['memory']}"
        )
    return results


def write_report(
    args: argparse.Namespace, paths: list[Path], results: dict[str, dict[str, Any]]
) -> None:
    n = args.documents
    rows = []
    for name, found in results.items():
        memory = found["memory"]
        switch, warm = p50(found["switch"], "latency"), p50(found["warm"], "latency")
        rows.append(
            f"| {name} | {(memory['opened'] - memory['start']) / n:.2f} "
            f"| {(memory['completed'] - memory['start']) / n:.2f} "
            f"| {found['cached'][0]} ({found['cached'][1]:.0f} MB) "
            f"| {switch:.1f} | {warm:.1f} | **{switch / warm:.2f}x** "
            f"| {p50(found['switch'], 'engine'):.1f} / {p50(found['warm'], 'engine'):.1f} "
            f"| {p50(found['switch'], 'prefilled'):.0f} / {p50(found['warm'], 'prefilled'):.0f} |"
        )
    first = next(iter(results.values()))
    now = datetime.datetime.now(datetime.UTC)
    body = "\n".join(
        [
            f"- date: {now:%Y-%m-%d %H:%M} UTC; command: `python bench/many_documents.py"
            f"{'' if args.model == 'random' else ' --model ' + args.model}` "
            f"({time.perf_counter() - args.started:.0f} s; load average {args.load:.1f} at start)",
            f"- machine: {machine()}; server: {first['model']}, `contextTokens` 2048"
            + (f" ({MODEL_NAME})" if args.model == "random" else ""),
            f"- documents: {n} standard-library modules of 300-3,000 lines ({paths[0].name} to "
            f"{paths[-1].name}, {first['text_mb']:.1f} MB of text in all), cursor mid-file; "
            "`maxNewTokens` 16, `reuseCompletions` off; memory is the server's resident set",
            "",
            "| configuration | MB per open document | MB per document after completing in all "
            "| caches kept (bytes) | switch p50, ms | warm p50, ms | switch / warm "
            "| engine p50, ms, switch / warm | prefilled tokens p50, switch / warm |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "Goal: the first completion after a switch within 2x of a warm document's. A "
            "document costs its text as a list of lines, its KV cache (all of them bounded "
            "together by `cacheMegabytes`, the least recently used dropped first), at most 8 "
            "remembered suggestions, and its lines' token ids (one memo for all documents, "
            "bounded).",
        ]
    )
    heading = "Many open documents" + ("" if args.model == "random" else f", {args.model}")
    write_section(Path(args.out), heading, body)
    print(body)


if __name__ == "__main__":
    main()
