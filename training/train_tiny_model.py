"""Train the tiny Code Llama-format model shipped in `codellama_lsp/models/tiny/`.

Data: the Python sources of the running interpreter's standard library (PSF licence), minus
tests, idlelib and site-packages; a fixed, seeded ~3% of files is held out for evaluation.
Tokenizer: sentencepiece BPE with Code Llama's conventions (byte fallback, identity
normalisation, dummy prefix, split digits, the `▁<PRE>`/`▁<SUF>`/`▁<MID>`/`▁<EOT>` pieces).
Objective (Code Llama paper): 90% infilling examples (PSM or SPM, half each), 10% left to right,
of up to 512 tokens; `--long-from F` switches to examples of up to 2,048 tokens (the server's
default window) for the last part of the budget, as Code Llama's long-context fine-tuning does.
Model: a few-million-parameter `LlamaForCausalLM`, trained for a wall-clock budget, saved every
few minutes so a usable model exists early.

    python training/train_tiny_model.py --minutes 70
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "codellama_lsp" / "models" / "tiny"
DEFAULT_LOG = Path(__file__).resolve().parent / "train.log"

SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__"}
INFILL_PIECES = ["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"]
MARKERS = ("<PRE>", "<SUF>", "<MID>", "<EOT>")
SENTINEL = "☺"

_log_file = None


def log(msg: str) -> None:
    line = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}Z] {msg}"
    print(line, flush=True)
    if _log_file is not None:
        _log_file.write(line + "\n")
        _log_file.flush()


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def collect_files(root: Path, max_file_bytes: int) -> dict[str, str]:
    """Relative path -> text of every usable stdlib `.py` file, in sorted order."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if any(part in SKIP_DIRS for part in rel_dir.parts):
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            if path.stat().st_size > max_file_bytes:
                continue
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text.strip():
                out[(rel_dir / name).as_posix()] = text
    return dict(sorted(out.items()))


def split_files(names: list[str], seed: int, heldout_frac: float) -> tuple[list[str], list[str]]:
    """(train, held out): a fixed, seeded split of the sorted relative paths."""
    names = sorted(names)
    rng = random.Random(f"heldout-{seed}")
    shuffled = names[:]
    rng.shuffle(shuffled)
    n_held = max(1, round(len(names) * heldout_frac))
    held = sorted(shuffled[:n_held])
    held_set = set(held)
    return [n for n in names if n not in held_set], held


def write_data_md(out: Path, train: list[str], held: list[str], args: argparse.Namespace) -> None:
    version = sys.version.split()[0]
    lines = [
        "# Training data of the tiny model",
        "",
        f"The model and its tokenizer were trained on the Python source files (`.py`) of the "
        f"standard library of CPython {version} (`sysconfig.get_paths()['stdlib']`), skipping "
        "`test/`, `tests/` (which includes `lib2to3`'s test data), `idlelib/`, `site-packages`, "
        f"`__pycache__`, files larger than {args.max_file_bytes} bytes (only the generated "
        "`pydoc_data/topics.py`) and files that do not decode as UTF-8.",
        "",
        "## Licence",
        "",
        f"These files are part of Python {version}, copyright Python Software Foundation, "
        "distributed under the PSF License Agreement for Python "
        f"(https://docs.python.org/{sys.version_info.major}.{sys.version_info.minor}/license.html"
        "). The trained weights and tokenizer are derived from them.",
        "",
        f"Split: seed {args.seed}, {len(held)} of {len(train) + len(held)} files "
        f"({100 * len(held) / (len(train) + len(held)):.1f}%) held out for evaluation and never "
        "trained on (not even by the tokenizer).",
        "",
        f"## Held-out files ({len(held)})",
        "",
        "```",
        *held,
        "```",
        "",
        f"## Training files ({len(train)})",
        "",
        "```",
        *train,
        "```",
        "",
    ]
    (out / "DATA.md").write_text("\n".join(lines), encoding="utf-8")


def read_data_md(path: Path) -> tuple[list[str], list[str]]:
    """(train, held out) as listed in DATA.md."""
    sections: dict[str, list[str]] = {}
    current = None
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## Held-out files"):
            current = "held"
        elif line.startswith("## Training files"):
            current = "train"
        elif line.startswith("```") and current:
            inside = not inside
            if not inside:
                current = None
        elif inside and current:
            sections.setdefault(current, []).append(line)
    return sections.get("train", []), sections.get("held", [])


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], model_path: Path, vocab_size: int) -> None:
    """Sentencepiece BPE with Code Llama's conventions; one sentence per source line."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        with corpus.open("w", encoding="utf-8") as f:
            for text in texts:
                for line in text.split("\n"):
                    if line.strip():
                        f.write(line + "\n")
        prefix = Path(tmp) / "sp"
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(prefix),
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=0.99995,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            split_digits=True,
            allow_whitespace_only_pieces=True,
            split_by_whitespace=True,
            max_sentence_length=16384,
            input_sentence_size=0,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            user_defined_symbols=INFILL_PIECES,
            num_threads=1,
            minloglevel=2,
        )
        shutil.copyfile(f"{prefix}.model", model_path)


class FimEncoder:
    """The reference recipe's `encode` / `encode_infilling`, over sentencepiece."""

    def __init__(self, model_path: Path) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))
        self.bos = self.sp.bos_id()
        self.eos = self.sp.eos_id()
        self.pre, self.suf, self.mid, self.eot = (self.sp.piece_to_id(p) for p in INFILL_PIECES)
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        assert all(
            pieces[i] == p
            for i, p in zip((self.pre, self.suf, self.mid, self.eot), INFILL_PIECES, strict=True)
        ), "missing infill pieces"
        self.control = {i for i, p in enumerate(pieces) if any(m in p for m in MARKERS)}
        self.control |= {self.bos, self.eos}
        self.byte_ids = {b: self.sp.piece_to_id(f"<0x{b:02X}>") for b in range(256)}
        self.sentinel_ids = self.sp.encode(SENTINEL)

    def _neutralize(self, ids: list[int]) -> list[int]:
        if not self.control.intersection(ids):
            return ids
        out: list[int] = []
        for i in ids:
            if i in self.control:
                piece = self.sp.id_to_piece(i).replace("▁", " ").encode("utf-8")
                out.extend(self.byte_ids[b] for b in piece)
            else:
                out.append(i)
        return out

    def encode(self, text: str) -> list[int]:
        return self._neutralize(self.sp.encode(text)) if text else []

    def encode_infilling(self, text: str) -> list[int]:
        if not text:
            return []
        ids = self.sp.encode(SENTINEL + text)
        head = len(self.sentinel_ids)
        if ids[:head] != self.sentinel_ids:
            raise ValueError(f"sentinel merged with the text: {text[:40]!r}")
        return self._neutralize(ids[head:])

    def psm(self, prefix: str, suffix: str, middle: str) -> list[int]:
        return [
            self.bos,
            self.pre,
            *self.encode(prefix),
            self.suf,
            *self.encode_infilling(suffix),
            self.mid,
            *self.encode_infilling(middle),
            self.eot,
        ]

    def spm(self, prefix: str, suffix: str, middle: str) -> list[int]:
        return [
            self.bos,
            self.pre,
            self.suf,
            *self.encode_infilling(suffix),
            self.mid,
            *self.encode(prefix),
            *self.encode_infilling(middle),
            self.eot,
        ]

    def spm_prompt(self, prefix: str, suffix: str) -> list[int]:
        return [
            self.bos,
            self.pre,
            self.suf,
            *self.encode_infilling(suffix),
            self.mid,
            *self.encode(prefix),
        ]


def piece_bytes(sp: Any, i: int) -> bytes:
    piece = sp.id_to_piece(i)
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    if piece in ("<s>", "</s>", "<unk>"):
        return b""
    return piece.replace("▁", " ").encode("utf-8")


# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------


def chunk_file(text: str, rng: random.Random, max_chars: int, min_chars: int) -> list[str]:
    """Consecutive pieces of whole lines, each of a random target size up to `max_chars`."""
    lines = text.splitlines(keepends=True)
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    target = rng.randint(min_chars, max_chars)
    for line in lines:
        while len(line) > max_chars:  # a very long line: cut it by characters
            if cur:
                chunks.append("".join(cur))
                cur, size = [], 0
            chunks.append(line[:max_chars])
            line = line[max_chars:]
        if size + len(line) > target and cur:
            chunks.append("".join(cur))
            cur, size = [], 0
            target = rng.randint(min_chars, max_chars)
        cur.append(line)
        size += len(line)
    if cur:
        chunks.append("".join(cur))
    return [c for c in chunks if c.strip()]


def pick_span(text: str, rng: random.Random) -> tuple[int, int]:
    """Start and end of the middle: half uniform character spans, half spans ending a line."""
    n = len(text)
    if rng.random() < 0.5:
        a, b = sorted((rng.randint(0, n), rng.randint(0, n)))
        return a, b
    start = rng.randint(0, n)
    lines = 1 if rng.random() < 0.6 else rng.randint(2, 4)
    end = start
    for k in range(lines):
        nl = text.find("\n", end if k == 0 else end + 1)
        if nl < 0:
            end = n
            break
        end = nl
    return start, end


def make_example(
    enc: FimEncoder, text: str, rng: random.Random, fim_rate: float, is_last: bool
) -> list[int]:
    if rng.random() >= fim_rate:
        ids = [enc.bos, *enc.encode(text)]
        return [*ids, enc.eos] if is_last else ids
    a, b = pick_span(text, rng)
    prefix, middle, suffix = text[:a], text[a:b], text[b:]
    if rng.random() < 0.5:
        return enc.psm(prefix, suffix, middle)
    return enc.spm(prefix, suffix, middle)


def example_stream(
    enc: FimEncoder, texts: list[str], rng: random.Random, args: argparse.Namespace
) -> Iterator[list[int]]:
    """Endless examples: every pass re-chunks the files and draws fresh splits."""
    epoch = 0
    while True:
        order = list(range(len(texts)))
        rng.shuffle(order)
        items: list[tuple[str, bool]] = []
        for i in order:
            chunks = chunk_file(texts[i], rng, args.max_chars, args.min_chars)
            items.extend((c, j == len(chunks) - 1) for j, c in enumerate(chunks))
        rng.shuffle(items)
        log(f"pass {epoch}: {len(items)} chunks")
        for text, is_last in items:
            for _ in range(4):
                ids = make_example(enc, text, rng, args.fim_rate, is_last)
                if len(ids) <= args.seq_len:
                    break
                # Too long: keep the first part of the chunk (at a line end) and try again.
                cut = text.rfind("\n", 0, int(len(text) * 0.7))
                text, is_last = text[: cut + 1 if cut > 0 else int(len(text) * 0.7)], False
            yield ids[: args.seq_len]
        epoch += 1


def batch_stream(
    examples: Iterator[list[int]], rng: random.Random, tokens_per_batch: int, pool: int = 2048
) -> Iterator[list[list[int]]]:
    """Batches of examples of similar lengths (little padding), in random order."""
    while True:
        buf = [next(examples) for _ in range(pool)]
        buf.sort(key=len)
        batches: list[list[list[int]]] = []
        cur: list[list[int]] = []
        for ex in buf:
            if cur and (len(cur) + 1) * len(ex) > tokens_per_batch:
                batches.append(cur)
                cur = []
            cur.append(ex)
        if cur:
            batches.append(cur)
        rng.shuffle(batches)
        yield from batches


def collate(batch: list[list[int]]) -> tuple[Any, Any]:
    import torch

    width = max(len(x) for x in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for r, x in enumerate(batch):
        ids[r, : len(x)] = torch.tensor(x)
        labels[r, : len(x)] = torch.tensor(x)
    return ids, labels


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def build_model(vocab_size: int, args: argparse.Namespace) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        # The longest examples trained on: the server caps its window to fit (with the answer).
        max_position_embeddings=args.long_seq_len if args.long_from < 1 else args.seq_len,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
        use_cache=True,
    )
    return LlamaForCausalLM(config)


def save_checkpoint(model: Any, out: Path, tok_model: Path, meta: dict, dtype: Any) -> None:
    """Write the folder's files atomically (each one replaced), so readers never see a half."""
    import copy

    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".saving"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    to_save = copy.deepcopy(model).to(dtype)
    to_save.save_pretrained(tmp, safe_serialization=True)
    GenerationConfig(bos_token_id=1, eos_token_id=2, max_new_tokens=48).save_pretrained(tmp)
    (tmp / "training_state.json").write_text(json.dumps(meta, indent=2) + "\n")
    if tok_model.resolve() != (out / "tokenizer.model").resolve():
        shutil.copyfile(tok_model, tmp / "tokenizer.model")
    for f in sorted(tmp.iterdir()):
        f.chmod(0o644)  # safetensors writes 0600
        os.replace(f, out / f.name)
    tmp.rmdir()


def heldout_batches(
    enc: FimEncoder, texts: list[str], args: argparse.Namespace, n: int = 96, size: int = 16
) -> list[tuple[Any, Any]]:
    rng = random.Random(f"heldout-loss-{args.seed}")
    it = example_stream_quiet(enc, texts, rng, args)
    exs = [next(it) for _ in range(n)]
    exs.sort(key=len)
    return [collate(exs[i : i + size]) for i in range(0, n, size)]


def long_phase(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of the long-context phase: longer chunks and examples, the rest alike."""
    return argparse.Namespace(
        **{**vars(args), "seq_len": args.long_seq_len, "max_chars": args.long_max_chars}
    )


def example_stream_quiet(
    enc: FimEncoder, texts: list[str], rng: random.Random, args: argparse.Namespace
) -> Iterator[list[int]]:
    items = []
    for text in texts:
        chunks = chunk_file(text, rng, args.max_chars, args.min_chars)
        items.extend((c, j == len(chunks) - 1) for j, c in enumerate(chunks))
    rng.shuffle(items)
    for c, is_last in items:
        ids = make_example(enc, c, rng, args.fim_rate, is_last)
        if len(ids) <= args.seq_len:
            yield ids


def evaluate_loss(model: Any, batches: list[tuple[Any, Any]]) -> float:
    import torch

    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for ids, labels in batches:
            out = model(input_ids=ids, labels=labels)
            k = int((labels[:, 1:] != -100).sum())
            tot += float(out.loss) * k
            n += k
    model.train()
    return tot / max(n, 1)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--log", type=Path, default=DEFAULT_LOG)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--minutes", type=float, default=85.0, help="wall-clock training budget")
    p.add_argument("--save-every", type=float, default=10.0, help="minutes between checkpoints")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--heldout-frac", type=float, default=0.03)
    p.add_argument("--max-file-bytes", type=int, default=300_000)
    p.add_argument("--tokenizer", type=Path, help="reuse this tokenizer.model (else train one)")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=640)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--max-chars", type=int, default=1500)
    p.add_argument("--min-chars", type=int, default=300)
    p.add_argument(
        "--long-from",
        type=float,
        default=1.0,
        help="fraction of the budget after which examples are long (1: never); a model trained "
        "on short examples only completes poorly from prompts longer than those",
    )
    p.add_argument("--long-seq-len", type=int, default=2048)
    p.add_argument("--long-max-chars", type=int, default=7000)
    p.add_argument("--fim-rate", type=float, default=0.9)
    p.add_argument("--tokens-per-batch", type=int, default=8192)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast of the forward pass (fast on CPUs with avx512_bf16)",
    )
    p.add_argument("--save-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--log-every", type=int, default=10)
    args = p.parse_args(argv)

    global _log_file
    args.log.parent.mkdir(parents=True, exist_ok=True)
    _log_file = args.log.open("a", encoding="utf-8")

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    t_start = time.time()
    log(f"args: {vars(args)}")
    log(f"python {sys.version.split()[0]}, torch {torch.__version__}, threads {args.threads}")

    files = collect_files(stdlib_root(), args.max_file_bytes)
    train_names, held_names = split_files(list(files), args.seed, args.heldout_frac)
    train_texts = [files[n] for n in train_names]
    held_texts = [files[n] for n in held_names]
    log(
        f"{len(files)} files ({sum(map(len, files.values())) / 1e6:.2f}M chars): "
        f"{len(train_names)} train, {len(held_names)} held out"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_data_md(args.out, train_names, held_names, args)

    tok_path = args.out / "tokenizer.model"
    if args.tokenizer:
        if args.tokenizer.resolve() != tok_path.resolve():
            shutil.copyfile(args.tokenizer, tok_path)
        log(f"tokenizer: reusing {args.tokenizer}")
    else:
        t0 = time.time()
        train_tokenizer(train_texts, tok_path, args.vocab_size)
        log(f"tokenizer: trained in {time.time() - t0:.0f}s")
    enc = FimEncoder(tok_path)
    vocab = enc.sp.get_piece_size()
    log(
        f"vocab {vocab}; bos {enc.bos} eos {enc.eos} pre {enc.pre} suf {enc.suf} "
        f"mid {enc.mid} eot {enc.eot}; sentinel {enc.sentinel_ids}"
    )
    n_tok = sum(len(enc.sp.encode(t)) for t in train_texts)
    log(f"training text: {n_tok} tokens ({sum(map(len, train_texts)) / n_tok:.2f} chars/token)")

    model = build_model(vocab, args)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters; {model.config.to_diff_dict()}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )

    rng = random.Random(f"train-{args.seed}")
    batches = batch_stream(example_stream(enc, train_texts, rng, args), rng, args.tokens_per_batch)
    held = heldout_batches(enc, held_texts, args)
    held_long = heldout_batches(enc, held_texts, long_phase(args), n=32, size=4)
    long_started = args.long_from >= 1
    budget = args.minutes * 60
    t_train = time.time()
    last_save = t_train
    step, tokens, run_loss, run_tok = 0, 0, 0.0, 0
    save_dtype = getattr(torch, args.save_dtype)

    def lr_at(progress: float) -> float:
        if step < args.warmup_steps:
            return args.lr * (step + 1) / args.warmup_steps
        cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * cos)

    def checkpoint(final: bool) -> None:
        hl = evaluate_loss(model, held)
        hl_long = evaluate_loss(model, held_long)
        meta = {
            "step": step,
            "tokens_seen": tokens,
            "train_loss": run_loss_last,
            "heldout_loss": hl,
            "heldout_loss_long": hl_long,
            "minutes": (time.time() - t_train) / 60,
            "params": n_params,
            "seed": args.seed,
            "final": final,
            # The options, less the output paths: the shipped folder holds no machine's paths.
            "args": {k: str(v) for k, v in vars(args).items() if k not in ("out", "log")},
        }
        save_checkpoint(model, args.out, tok_path, meta, save_dtype)
        size = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
        log(
            f"checkpoint step {step}: tokens {tokens}, held-out loss {hl:.4f} "
            f"(long examples {hl_long:.4f}), "
            f"folder {size / 1e6:.1f} MB{' (final)' if final else ''}"
        )

    run_loss_last = float("nan")
    model.train()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)
    while True:
        elapsed = time.time() - t_train
        if elapsed >= budget:
            break
        if not long_started and elapsed >= args.long_from * budget:
            long_started = True
            log(f"long phase: examples up to {args.long_seq_len} tokens")
            batches = batch_stream(
                example_stream(enc, train_texts, rng, long_phase(args)), rng, args.tokens_per_batch
            )
        ids, labels = collate(next(batches))
        for g in opt.param_groups:
            g["lr"] = lr_at(elapsed / budget)
        with autocast:
            out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        k = int((labels != -100).sum())
        tokens += k
        run_loss += out.loss.item() * k
        run_tok += k
        if step % args.log_every == 0:
            run_loss_last = run_loss / run_tok
            el = time.time() - t_train
            log(
                f"step {step} loss {run_loss_last:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"gnorm {float(gnorm):.2f} tokens {tokens} tok/s {tokens / el:.0f} "
                f"elapsed {el / 60:.1f}m"
            )
            run_loss, run_tok = 0.0, 0
        if time.time() - last_save >= args.save_every * 60:
            checkpoint(False)
            last_save = time.time()
    if run_tok:
        run_loss_last = run_loss / run_tok
    checkpoint(True)
    log(f"done: {step} steps, {tokens} tokens, {(time.time() - t_start) / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
