"""The command line: `serve` (the default), `complete` and `prompt`.

Every failure a user can cause (a missing file, a bad position, a model that cannot be loaded)
ends in one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codellama_lsp import __version__
from codellama_lsp.checkpoint.download import describe, percentage
from codellama_lsp.one_shot import FILL_ME, UsageError, read_source, request_at
from codellama_lsp.settings import (
    SettingError,
    Settings,
    SettingSpec,
    setting_specs,
    with_environment_key,
)

EXIT_FAILURE = 1


def engine_options() -> argparse.ArgumentParser:
    """One flag for each setting, derived from its definition: the editor's settings override
    what the flags set."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (the editor's settings override these)")
    for spec in setting_specs():
        if not spec.secret:
            group.add_argument(spec.flag, **_flag_options(spec))
    return parent


def _flag_options(spec: SettingSpec) -> dict[str, Any]:
    """argparse options for a setting: the value is converted and checked as the editor's is."""

    def convert(text: str) -> Any:
        try:
            return spec.convert_text(text)
        except SettingError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    shown = spec.default
    if spec.kind is bool:
        metavar, shown = "{on,off}", "on" if spec.default else "off"
    elif spec.choices:
        metavar = "{" + ",".join(spec.choices) + "}"
    elif spec.kind in (int, float):
        metavar = "N"
    elif spec.kind is str:
        metavar = "NAME"
    else:
        metavar, shown = "JSON", json.dumps(spec.default)
    limits = f"{spec.minimum} to {spec.maximum}; " if spec.minimum is not None else ""
    text = spec.help.replace("`", "").replace("**", "").replace("%", "%%")
    return {
        # Unset flags leave no attribute, so a subcommand's flags never mask the main ones.
        "default": argparse.SUPPRESS,
        "type": convert,
        "metavar": metavar,
        "help": f"{text} ({limits}default {shown})",
    }


def settings_from(args: argparse.Namespace) -> Settings:
    """The flags given, over the defaults (argparse has converted and checked each value), and
    the environment's API key."""
    given = {spec.name: getattr(args, spec.name) for spec in setting_specs() if spec.name in args}
    return with_environment_key(Settings(**given))


CURSOR_HELP = (
    f"1-based line and column; without them, the file's one {FILL_ME} marks the cursor "
    "(`complete` then prints FILE with it filled; with --middle, only what fills it)"
)


WITH: dict[str, Any] = {
    "nargs": "+",
    "default": [],
    "type": Path,
    "metavar": "FILE",
    "help": "files treated as open beside FILE: sources of extra context",
}


def build_parser() -> argparse.ArgumentParser:
    engine = engine_options()
    serving = argparse.ArgumentParser(add_help=False)
    group = serving.add_argument_group("serving")
    group.add_argument(
        "--tcp",
        metavar="[HOST:]PORT",
        help="listen on TCP instead of stdio, one editor at a time (for debugging; loopback "
        "only: 127.0.0.1 unless ::1 or localhost is given)",
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
        "complete",
        parents=[engine],
        help="print the completion at FILE:LINE:COL, or FILE with <FILL_ME> filled",
    )
    complete.add_argument("cursor", metavar="FILE[:LINE:COL]", help=CURSOR_HELP)
    complete.add_argument(
        "--middle", action="store_true", help=f"with {FILL_ME}: print only what fills it"
    )
    complete.add_argument("--with", dest="others", **WITH)
    prompt = commands.add_parser(
        "prompt", parents=[engine], help="print the prompt the model would get (no weights needed)"
    )
    prompt.add_argument("cursor", metavar="FILE[:LINE:COL]", help=CURSOR_HELP)
    prompt.add_argument("--format", default="text", choices=["text", "ids"])
    prompt.add_argument("--with", dest="others", **WITH)
    return parser


def run_prompt(args: argparse.Namespace) -> int:
    """The prompt `complete` would send: fitted to the checkpoint's declared positions, if its
    `config.json` is at hand, and healed as the settings' engine heals (the bytes healing backed
    off, which the completion must start with, named on stderr)."""
    from codellama_lsp.checkpoint.files import declared_positions
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer
    from codellama_lsp.completion.prepare import PromptView, engine_heals, prepare
    from codellama_lsp.context.line_tokens import LineTokenCounter

    settings = settings_from(args)
    request = request_at(settings, read_source(args.cursor), args.others)
    tokenizer = load_tokenizer(settings.model)
    counter, positions = LineTokenCounter(tokenizer), declared_positions(settings.model)
    try:
        prepared = prepare(tokenizer, request, counter, positions, engine_heals(settings))
    except ValueError as error:  # the positions leave no room for a prompt
        raise UsageError(str(error)) from error
    view = PromptView.of(tokenizer, prepared)
    if args.format == "ids":
        print(" ".join(map(str, view.ids)))
    else:
        sys.stdout.write(view.text + "\n")
    if view.must_start_with:
        start = json.dumps(view.must_start_with, ensure_ascii=False)
        print(
            f"codellama-lsp: the completion must start with {start} (token healing)",
            file=sys.stderr,
        )
    return 0


def run_complete(args: argparse.Namespace) -> int:
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer
    from codellama_lsp.completion.infill import complete
    from codellama_lsp.context.line_tokens import LineTokenCounter
    from codellama_lsp.engine.interface import EngineUnavailable
    from codellama_lsp.engine.opening import open_engine

    settings = settings_from(args)
    source = read_source(args.cursor)
    request = request_at(settings, source, args.others)  # every file read before the load
    if settings.trust_remote_code:
        print(
            "codellama-lsp: --trust-remote-code is on: the checkpoint's code may run",
            file=sys.stderr,
        )
    started = time.perf_counter()
    bar = DownloadBar(settings.model)
    tokenizer = load_tokenizer(settings.model)
    try:
        engine = open_engine(settings, tokenizer, bar)
    finally:
        bar.finish()
    try:
        engine.connect()
        loaded_s = time.perf_counter() - started
        infill = complete(engine, "cli", request, LineTokenCounter(tokenizer), lambda: False)
    except EngineUnavailable as error:
        raise UsageError(str(error)) from None
    finally:
        engine.close()
    if source.around is not None and not args.middle:
        before, after = source.around
        sys.stdout.write(before + infill.text + after)
    else:
        sys.stdout.write(infill.text + "\n")
    print(
        f"{engine.description}: ready in {loaded_s:.2f} s; {infill.prompt_tokens} prompt tokens, "
        f"{infill.generated} generated, first token {infill.first_token_s * 1000:.0f} ms, "
        f"total {infill.total_s * 1000:.0f} ms",
        file=sys.stderr,
    )
    return 0


class DownloadBar:
    """A model's first download as a bar on stderr, redrawn in place once per percent."""

    def __init__(self, model: str, width: int = 30) -> None:
        self.model = model
        self.width = width
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * percentage(done, total) // 100
        bar = "#" * filled + "." * (self.width - filled)
        print(f"\r{self.model}: [{bar}] {describe(done, total)}", end="", file=sys.stderr)
        sys.stderr.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            print(file=sys.stderr)


def run_serve(args: argparse.Namespace) -> int:
    from codellama_lsp.log_redaction import redact_secrets_in_logs
    from codellama_lsp.lsp.framing import FrameReader, PipeWriter
    from codellama_lsp.lsp.handlers import create_server

    logging.basicConfig(
        filename=args.log_file,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact_secrets_in_logs()
    if args.log_level != "debug":
        # pygls logs whole messages (document text, completions) at info: only debug asks for them.
        logging.getLogger("pygls").setLevel(logging.WARNING)
    settings = settings_from(args)
    server = create_server(settings)
    if args.tcp:
        from codellama_lsp.lsp.tcp import listen, loopback_address, serve_tcp

        try:
            listener = listen(*loopback_address(args.tcp))
        except ValueError as error:
            raise UsageError(str(error)) from None
        except OSError as error:  # the port is taken, or the address is not this machine's
            raise UsageError(f"--tcp {args.tcp}: {error.strerror or error}") from None
        serve_tcp(server, listener)
    else:
        # pygls only calls readline and read; FrameReader re-finds frames after bad ones. A
        # closed pipe is the client's end: the exit code is the one `exit` would have given.
        server.start_io(
            stdin=FrameReader(sys.stdin.buffer),  # type: ignore[arg-type]
            stdout=PipeWriter(sys.stdout.buffer, server.end),  # type: ignore[arg-type]
        )
    # The client went away without `exit`: leave without waiting for a model that is loading.
    server.end()
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    from codellama_lsp.checkpoint.files import ModelFilesError
    from codellama_lsp.checkpoint.tokenizer import TokenizerError
    from codellama_lsp.engine.interface import EngineSetupError

    handlers = {"complete": run_complete, "prompt": run_prompt}
    try:
        return handlers.get(args.command, run_serve)(args)
    except (UsageError, EngineSetupError, ModelFilesError, TokenizerError) as error:
        print(f"codellama-lsp: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
