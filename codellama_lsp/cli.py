"""The command line: `serve` (the default), `complete` and `prompt`.

Every failure a user can cause (a missing file, a bad position, a model that cannot be loaded)
ends in one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .engine.infill import InfillRequest
from .settings import DEFAULT_MODEL, Settings

EXIT_FAILURE = 1


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


@dataclass(frozen=True)
class Cursor:
    path: Path
    line: int
    """0-based."""
    column: int
    """0-based, in characters."""


def parse_cursor(spec: str) -> Cursor:
    path, sep, rest = spec.rpartition(":")
    path, sep2, line_text = path.rpartition(":")
    if not (sep and sep2) or not line_text.isdigit() or not rest.isdigit():
        raise UsageError(f"expected FILE:LINE:COL (1-based), got {spec!r}")
    line, column = int(line_text), int(rest)
    if line < 1 or column < 1:
        raise UsageError(f"LINE and COL count from 1, got {line}:{column}")
    return Cursor(Path(path), line - 1, column - 1)


def read_cursor(cursor: Cursor) -> tuple[list[str], str]:
    """The file's lines (as the server keeps them) and its line ending, the cursor checked."""
    from .document import TextDocument

    try:
        text = cursor.path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{cursor.path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{cursor.path}: is a folder, not a file") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{cursor.path}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise UsageError(f"{cursor.path}: {error.strerror}") from None
    document = TextDocument(cursor.path.resolve().as_uri(), "", 0, text)
    if cursor.line >= len(document.lines):
        raise UsageError(
            f"{cursor.path}: line {cursor.line + 1} is past the end ({len(document.lines)} lines)"
        )
    width = len(document.line_text(cursor.line))
    if cursor.column > width:
        raise UsageError(
            f"{cursor.path}:{cursor.line + 1}: column {cursor.column + 1} is past the end "
            f"of the line ({width} characters)"
        )
    return document.lines, document.eol()


def engine_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("model and generation")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"hub id, local folder, or 'tiny' (the small shipped model); default {DEFAULT_MODEL}",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    group.add_argument(
        "--dtype", default="auto", choices=["auto", "float16", "bfloat16", "float32"]
    )
    group.add_argument("--quantization", default="none", choices=["none", "4bit", "8bit"])
    group.add_argument("--order", default="spm", choices=["spm", "psm"], help="infilling order")
    group.add_argument("--context-tokens", type=int, default=2048, metavar="N")
    group.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    group.add_argument("--temperature", type=float, default=0.0)
    group.add_argument(
        "--token-healing",
        default="on",
        choices=["on", "off"],
        help="suffix-first: let a cursor mid-word re-choose the word's token (default on)",
    )
    group.add_argument(
        "--engine",
        default="transformers",
        choices=["transformers", "llama.cpp", "openai"],
        help="where generation runs: in this process (default), or on a llama.cpp or "
        "OpenAI-compatible server (then only the model's tokenizer is loaded); the API key is "
        "read from $CODELLAMA_LSP_API_KEY",
    )
    group.add_argument("--engine-url", metavar="URL", help="the server of a remote engine")
    group.add_argument("--engine-model", metavar="NAME", help="the served model's name (openai)")
    return parent


def settings_from(args: argparse.Namespace) -> Settings:
    from .settings import parse_settings

    raw = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "quantization": args.quantization,
        "order": args.order,
        "contextTokens": args.context_tokens,
        "maxNewTokens": args.max_new_tokens,
        "temperature": args.temperature,
        "tokenHealing": args.token_healing == "on",
        "engine": args.engine,
        "engineUrl": args.engine_url,
        "engineModel": args.engine_model,
    }
    settings, problems = parse_settings(raw)
    if problems:
        raise UsageError(problems[0].split("; using")[0])
    return settings


def build_parser() -> argparse.ArgumentParser:
    engine = engine_options()
    serving = argparse.ArgumentParser(add_help=False)
    group = serving.add_argument_group("serving")
    group.add_argument(
        "--tcp",
        metavar="[HOST:]PORT",
        help="listen on TCP instead of stdio (for debugging; host 127.0.0.1 unless given)",
    )
    group.add_argument("--log-file", type=Path, help="write logs here (default: stderr)")
    group.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    parser = argparse.ArgumentParser(
        prog="codellama-lsp",
        description="Private, local fill-in-the-middle code completion with Code Llama, over LSP.",
        parents=[serving, engine],
    )
    parser.add_argument("--version", action="version", version=f"codellama-lsp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve", parents=[serving, engine], help="speak LSP over stdio (the default)"
    )
    complete = commands.add_parser(
        "complete", parents=[engine], help="print the completion at FILE:LINE:COL"
    )
    complete.add_argument("cursor", metavar="FILE:LINE:COL", help="1-based line and column")
    prompt = commands.add_parser(
        "prompt", parents=[engine], help="print the prompt the model would get (no weights needed)"
    )
    prompt.add_argument("cursor", metavar="FILE:LINE:COL", help="1-based line and column")
    prompt.add_argument("--format", default="text", choices=["text", "ids"])
    return parser


def run_prompt(args: argparse.Namespace) -> int:
    from .engine.infill import LineTokenCounter, fit_to_model, prompt_for
    from .model_files import declared_positions
    from .prompt import render_prompt
    from .tokenizer import load_tokenizer

    settings = settings_from(args)
    cursor = parse_cursor(args.cursor)
    lines, eol = read_cursor(cursor)
    tokenizer = load_tokenizer(settings.model)
    request = _request(settings, cursor, lines, eol)
    positions = declared_positions(settings.model)
    if positions is not None:  # the window `complete` would use
        try:
            request = fit_to_model(request, positions)
        except ValueError as error:
            raise UsageError(str(error)) from error
    _, ids = prompt_for(tokenizer, request, LineTokenCounter(tokenizer))
    if args.format == "ids":
        print(" ".join(map(str, ids)))
    else:
        sys.stdout.write(render_prompt(tokenizer, ids) + "\n")
    return 0


def run_complete(args: argparse.Namespace) -> int:
    from .engine.infill import LineTokenCounter, complete
    from .engine.interface import EngineUnavailable
    from .engine.opening import open_engine
    from .tokenizer import load_tokenizer

    settings = settings_from(args)
    cursor = parse_cursor(args.cursor)
    lines, eol = read_cursor(cursor)
    started = time.perf_counter()
    tokenizer = load_tokenizer(settings.model)
    engine = open_engine(settings, tokenizer)
    try:
        engine.connect()
        loaded_s = time.perf_counter() - started
        request = _request(settings, cursor, lines, eol)
        infill = complete(engine, "cli", request, LineTokenCounter(tokenizer), lambda: False)
    except EngineUnavailable as error:
        raise UsageError(str(error)) from None
    finally:
        engine.close()
    sys.stdout.write(infill.text + "\n")
    print(
        f"{engine.description}: ready in {loaded_s:.2f} s; {infill.prompt_tokens} prompt tokens, "
        f"{infill.generated} generated, first token {infill.first_token_s * 1000:.0f} ms, "
        f"total {infill.total_s * 1000:.0f} ms",
        file=sys.stderr,
    )
    return 0


def _request(settings: Settings, cursor: Cursor, lines: list[str], eol: str) -> InfillRequest:
    return InfillRequest.at(settings, lines, cursor.line, cursor.column, eol)


def run_serve(args: argparse.Namespace) -> int:
    from .framing import FrameReader
    from .server import create_server, terminate

    logging.basicConfig(
        filename=args.log_file,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "debug":
        # pygls logs whole messages (document text, completions) at info: only debug asks for them.
        logging.getLogger("pygls").setLevel(logging.WARNING)
    settings = settings_from(args)
    server = create_server(settings)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            raise UsageError(f"--tcp expects [HOST:]PORT, got {args.tcp!r}")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        # pygls only calls readline and read; FrameReader re-finds frames after bad ones.
        server.start_io(stdin=FrameReader(sys.stdin.buffer))  # type: ignore[arg-type]
    # The client went away without `exit`: leave without waiting for a model that is loading.
    terminate(1)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    from .engine.interface import EngineSetupError
    from .model_files import ModelFilesError
    from .tokenizer import TokenizerError

    handlers = {"complete": run_complete, "prompt": run_prompt}
    try:
        return handlers.get(args.command, run_serve)(args)
    except (UsageError, EngineSetupError, ModelFilesError, TokenizerError) as error:
        print(f"codellama-lsp: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
