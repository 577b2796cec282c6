"""The command line: `serve` (the default), `complete` and `prompt`.

Every failure a user can cause (a missing file, a bad position, a model that cannot be loaded)
ends in one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codellama_lsp import __version__
from codellama_lsp.checkpoint.download import describe, percentage
from codellama_lsp.completion.infill import InfillRequest
from codellama_lsp.settings import (
    SettingError,
    Settings,
    SettingSpec,
    setting_specs,
    with_environment_key,
)

EXIT_FAILURE = 1


class UsageError(Exception):
    """A problem with what the user asked for; printed as one line."""


SOURCE_LIMIT = 16 * 2**20
"""The most a source file may hold: far more than a prompt can use."""

FILL_ME = "<FILL_ME>"
"""The hole marker of the transformers docs' Code Llama examples, read by `complete FILE`."""


@dataclass(frozen=True)
class Cursor:
    path: Path
    line: int
    """0-based."""
    column: int
    """0-based, in characters."""


@dataclass(frozen=True)
class Source:
    """A file's lines (as the server keeps them), its line ending and the cursor in it."""

    path: Path
    lines: list[str]
    eol: str
    line: int
    column: int
    around: tuple[str, str] | None = None
    """The text before and after the `<FILL_ME>` that marked the cursor, if one did."""


def parse_cursor(spec: str) -> Cursor:
    path, sep, rest = spec.rpartition(":")
    path, sep2, line_text = path.rpartition(":")
    if not (sep and sep2) or not line_text.isdigit() or not rest.isdigit():
        raise UsageError(f"expected FILE:LINE:COL (1-based), got {spec!r}")
    line, column = int(line_text), int(rest)
    if line < 1 or column < 1:
        raise UsageError(f"LINE and COL count from 1, got {line}:{column}")
    return Cursor(Path(path), line - 1, column - 1)


def read_source(spec: str) -> Source:
    """FILE:LINE:COL, or a FILE whose one `<FILL_ME>` marks the cursor (and is taken out)."""
    if re.search(r":[0-9]*$", spec):
        return read_cursor(parse_cursor(spec))
    return read_fill_me(Path(spec))


def read_text(path: Path) -> str:
    """A source file's text: a regular file of at most SOURCE_LIMIT bytes, so that a FIFO
    named by mistake cannot hang the command, nor /dev/zero fill the memory."""
    from codellama_lsp.checkpoint.files import UnreadableFile, read_regular_file

    try:
        return read_regular_file(path, SOURCE_LIMIT).decode("utf-8")
    except UnreadableFile as error:
        raise UsageError(f"{path}: {error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not UTF-8 text ({error.reason})") from None


def read_cursor(cursor: Cursor) -> Source:
    """The file at the cursor, the cursor checked."""
    from codellama_lsp.documents.text_document import TextDocument

    text = read_text(cursor.path)  # first: it explains a path that cannot be resolved
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
    return Source(cursor.path, document.lines, document.eol(), cursor.line, cursor.column)


def read_fill_me(path: Path) -> Source:
    """The file with its one `<FILL_ME>` taken out, the cursor where it was."""
    from codellama_lsp.documents.text_document import TextDocument

    text = read_text(path)
    count = text.count(FILL_ME)
    if count != 1:
        found = "no" if count == 0 else str(count)
        raise UsageError(
            f"{path}: {found} {FILL_ME} markers; mark the hole with exactly one, "
            "or give FILE:LINE:COL"
        )
    before, after = text.split(FILL_ME)
    head = TextDocument("", "", 0, before).lines
    document = TextDocument(path.resolve().as_uri(), "", 0, before + after)
    return Source(
        path, document.lines, document.eol(), len(head) - 1, len(head[-1]), (before, after)
    )


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
    from codellama_lsp.checkpoint.files import declared_positions
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer
    from codellama_lsp.completion.infill import LineTokenCounter, fit_to_model, prompt_for
    from codellama_lsp.context.prompt import render_prompt

    settings = settings_from(args)
    request = _request(settings, read_source(args.cursor), args.others)
    tokenizer = load_tokenizer(settings.model)
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
    from codellama_lsp.checkpoint.tokenizer import load_tokenizer
    from codellama_lsp.completion.infill import LineTokenCounter, complete
    from codellama_lsp.engine.interface import EngineUnavailable
    from codellama_lsp.engine.opening import open_engine

    settings = settings_from(args)
    source = read_source(args.cursor)
    request = _request(settings, source, args.others)  # every file read before the load
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


def _request(settings: Settings, source: Source, others: list[Path]) -> InfillRequest:
    from codellama_lsp.context.extra_context import (
        ExtraContext,
        OpenFile,
        choose_snippets,
        comment_marker,
    )

    files = []
    for path in others:
        # Read before resolved: reading says why a path is bad (a link loop, say).
        lines = tuple(read_cursor(Cursor(path, 0, 0)).lines)
        if path.resolve() != source.path.resolve():
            files.append(OpenFile(str(path.resolve()), _shown(path), lines))
    extra = ExtraContext(
        choose_snippets(source.lines, source.line, files, settings.extra_context_tokens),
        comment_marker("", str(source.path)),
    )
    return InfillRequest.at(settings, source.lines, source.line, source.column, source.eol, extra)


def _shown(path: Path) -> str:
    """A path as the prompt names it: relative to the working folder if under it."""
    absolute, here = path.resolve(), Path.cwd()
    return absolute.relative_to(here).as_posix() if absolute.is_relative_to(here) else str(absolute)


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
