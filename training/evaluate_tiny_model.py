"""Single-line infilling on the held-out stdlib files, for the tiny model (or any checkpoint).

For a seeded sample of cursor positions (a random column of a random non-blank line of a
held-out file), the middle to predict is the rest of that line; the prompt is the reference
recipe's suffix-prefix-middle (SPM) prompt, `[BOS, PRE, SUF] + encode_infilling(suffix) + [MID] +
encode(prefix)`, with a window of context on either side. Decoding is greedy and stops at
`▁<EOT>`, `</s>`, the first newline or `--max-new-tokens`. The first line of the completion is
compared with the rest of the line (trailing whitespace ignored): exact match and mean edit
similarity (difflib ratio), against two trivial baselines: the empty completion, and the previous
line's remainder from the same column.

    python training/evaluate_tiny_model.py                  # the shipped model
    python training/evaluate_tiny_model.py --model DIR --json out.json
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_tiny_model import (
    DEFAULT_OUT,
    FimEncoder,
    collect_files,
    piece_bytes,
    read_data_md,
    split_files,
    stdlib_root,
)


def sample_cases(
    files: dict[str, str], n: int, seed: int, prefix_chars: int, suffix_chars: int
) -> list[dict]:
    """Seeded cursor positions: (prefix window, suffix window, target, previous-line baseline)."""
    rng = random.Random(f"eval-{seed}")
    candidates = []
    for name, text in sorted(files.items()):
        lines = text.split("\n")
        candidates.extend((name, i) for i, line in enumerate(lines) if line.strip())
    picks = rng.sample(candidates, min(n, len(candidates)))
    cases = []
    for name, i in picks:
        lines = files[name].split("\n")
        line = lines[i]
        col = rng.randrange(0, len(line.rstrip()))
        before = "\n".join(lines[:i])
        prefix = (before + "\n" if i else "") + line[:col]
        suffix = "\n" + "\n".join(lines[i + 1 :]) if i + 1 < len(lines) else ""
        # Context windows, cut at line boundaries like the training chunks.
        if len(prefix) > prefix_chars:
            cut = prefix.find("\n", len(prefix) - prefix_chars)
            prefix = (
                prefix[cut + 1 :]
                if 0 <= cut < len(prefix) - len(line[:col])
                else prefix[-prefix_chars:]
            )
        if len(suffix) > suffix_chars:
            cut = suffix.rfind("\n", 0, suffix_chars)
            suffix = suffix[: cut + 1] if cut > 0 else suffix[:suffix_chars]
        prev = lines[i - 1] if i else ""
        cases.append(
            {
                "file": name,
                "line": i + 1,
                "col": col,
                "prefix": prefix,
                "suffix": suffix,
                "target": line[col:],
                "prev_line_baseline": prev[col:],
            }
        )
    return cases


def greedy(model: Any, enc: FimEncoder, prompt: list[int], max_new: int) -> tuple[str, int]:
    """Greedy decoding with the KV cache; stops at EOT, EOS or a newline. (text, tokens)."""
    import torch

    stop = {enc.eot, enc.eos}
    out = b""
    ids = torch.tensor([prompt])
    past = None
    n = 0
    # transformers >= 5.2x calls the KV cache `cache`; older releases `past_key_values`.
    cache_arg = (
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    )
    with torch.no_grad():
        for n in range(1, max_new + 1):  # noqa: B007
            res = model(input_ids=ids, use_cache=True, **{cache_arg: past})
            past = res[cache_arg]
            tok = int(res.logits[0, -1].argmax())
            if tok in stop:
                break
            out += piece_bytes(enc.sp, tok)
            if b"\n" in out:
                break
            ids = torch.tensor([[tok]])
    return out.decode("utf-8", errors="replace").split("\n")[0], n


def score(preds: list[str], targets: list[str]) -> dict:
    em = [p.rstrip() == t.rstrip() for p, t in zip(preds, targets, strict=True)]
    sim = [
        difflib.SequenceMatcher(None, p.rstrip(), t.rstrip()).ratio()
        for p, t in zip(preds, targets, strict=True)
    ]
    return {"exact_match": sum(em) / len(em), "edit_similarity": sum(sim) / len(sim)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_OUT)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=1234, help="sampling seed of the cursor positions")
    p.add_argument("--split-seed", type=int, default=1234, help="the training run's --seed")
    p.add_argument("--prefix-chars", type=int, default=1000)
    p.add_argument("--suffix-chars", type=int, default=400)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--mode", choices=["spm", "psm"], default="spm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the figures and every case here")
    p.add_argument("--show", type=int, default=8, help="print this many examples")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    files = collect_files(stdlib_root(), 300_000)
    data_md = args.model / "DATA.md"
    if data_md.is_file():
        train, held = read_data_md(data_md)
        _, recomputed = split_files(list(files), args.split_seed, 0.03)
        if recomputed != held:
            print(
                "warning: DATA.md's held-out list differs from the recomputed split",
                file=sys.stderr,
            )
        overlap = set(train) & set(held)
        assert not overlap, f"held-out files also trained on: {sorted(overlap)[:5]}"
    else:
        _, held = split_files(list(files), args.split_seed, 0.03)
    held_files = {n: files[n] for n in held}

    state_path = args.model / "training_state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    enc = FimEncoder(args.model / "tokenizer.model")
    cases = sample_cases(held_files, args.n, args.seed, args.prefix_chars, args.suffix_chars)

    t0 = time.time()
    preds, n_prompt = [], 0
    for c in cases:
        if args.mode == "spm":
            prompt = enc.spm_prompt(c["prefix"], c["suffix"])
        else:
            prompt = [
                enc.bos,
                enc.pre,
                *enc.encode(c["prefix"]),
                enc.suf,
                *enc.encode_infilling(c["suffix"]),
                enc.mid,
            ]
        n_prompt += len(prompt)
        text, _ = greedy(model, enc, prompt, args.max_new_tokens)
        c["prediction"] = text
        preds.append(text)
    secs = time.time() - t0

    targets = [c["target"] for c in cases]
    results = {
        "model": str(args.model),
        "checkpoint": {k: state.get(k) for k in ("step", "tokens_seen", "heldout_loss", "final")},
        "mode": args.mode,
        "cases": len(cases),
        "held_out_files": len(held_files),
        "mean_prompt_tokens": n_prompt / len(cases),
        "seconds": secs,
        "model_scores": score(preds, targets),
        "baseline_empty": score([""] * len(cases), targets),
        "baseline_previous_line": score([c["prev_line_baseline"] for c in cases], targets),
    }
    # The codec modules (`encodings/`) are mostly generated tables: score without them too.
    code = [i for i, c in enumerate(cases) if not c["file"].startswith("encodings/")]
    results["without_encodings"] = {
        "cases": len(code),
        "model_scores": score([preds[i] for i in code], [targets[i] for i in code]),
        "baseline_empty": score([""] * len(code), [targets[i] for i in code]),
        "baseline_previous_line": score(
            [cases[i]["prev_line_baseline"] for i in code], [targets[i] for i in code]
        ),
    }
    print(f"model {args.model} checkpoint {results['checkpoint']}")
    print(
        f"{len(cases)} cursor positions in {len(held_files)} held-out files, {args.mode}, "
        f"mean prompt {results['mean_prompt_tokens']:.0f} tokens, {secs:.0f}s"
    )
    print(f"{'':26}{'exact match':>12}{'edit sim':>10}")
    for label, key in (
        ("model (greedy)", "model_scores"),
        ("baseline: empty", "baseline_empty"),
        ("baseline: previous line", "baseline_previous_line"),
    ):
        r = results[key]
        print(f"{label:26}{100 * r['exact_match']:11.1f}%{100 * r['edit_similarity']:9.1f}%")
    print(f"without the codec tables of encodings/ ({len(code)} positions):")
    for label, key in (
        ("model (greedy)", "model_scores"),
        ("baseline: empty", "baseline_empty"),
        ("baseline: previous line", "baseline_previous_line"),
    ):
        r = results["without_encodings"][key]
        print(f"{label:26}{100 * r['exact_match']:11.1f}%{100 * r['edit_similarity']:9.1f}%")
    for c in cases[: args.show]:
        print(f"--- {c['file']}:{c['line']}:{c['col']}")
        print(f"    prefix ...{c['prefix'][-60:]!r}")
        print(f"    target    {c['target']!r}")
        print(f"    predicted {c['prediction']!r}")
    if args.json:
        args.json.write_text(json.dumps({**results, "examples": cases}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
