"""Tests for turning the model's raw middle into the text inserted at the cursor.

The core check uses real code: cut a stdlib file into prefix|middle|suffix, where the middle is
part of one line, and require that the true middle comes back when the model ends there, and
when it runs on into the suffix.
"""

from __future__ import annotations

import random
import re
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from codellama_lsp.completion.postprocess import (
    CONTROL_PIECES,
    GRACE_LINES,
    detect_indent,
    is_single_line,
    postprocess,
    should_stop,
    shown_part,
    to_document_style,
)

FILES = 40
POSITIONS_PER_FILE = 75
ECHOED_LINES = 3
_TOKEN = re.compile(r"\w+|[ \t]+|\n|.")  # a stand-in for model tokens


@dataclass(frozen=True)
class Split:
    """A cursor in a real file, with the true middle: part of one line."""

    name: str
    prefix: str
    middle: str
    suffix: str

    def echo_ends(self) -> list[int]:
        """Ends of the suffix's first lines (line break included): what an echo repeats."""
        ends = []
        while (
            len(ends) < ECHOED_LINES
            and (end := self.suffix.find("\n", ends[-1] if ends else 0)) >= 0
        ):
            ends.append(end + 1)
        return ends or [len(self.suffix)]

    def has_control_text(self) -> bool:
        """The file holds a control piece (cgi.py prints "<PRE>") where the model would write
        it: such text can never be told apart from the model's own control pieces."""
        nearby = self.middle + self.suffix[: self.echo_ends()[-1]]
        return any(piece in nearby for piece in CONTROL_PIECES)


@cache
def real_splits() -> tuple[Split, ...]:
    """Seeded cursor positions in a seeded sample of the standard library's modules."""
    rng = random.Random(0)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    splits = []
    modules = sorted(path for path in stdlib.glob("*.py") if path.stat().st_size)
    for path in rng.sample(modules, FILES):
        text = path.read_text(encoding="utf-8", errors="replace")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        starts = [0, *(i + 1 for i, char in enumerate(text) if char == "\n")]
        lines = [(start, text.find("\n", start)) for start in starts]
        lines = [(start, end) for start, end in lines if end > start]
        for _ in range(POSITIONS_PER_FILE):
            start, end = rng.choice(lines)
            left = rng.randrange(end - start)
            right = end - start if rng.random() < 0.5 else rng.randint(left + 1, end - start)
            splits.append(
                Split(
                    path.name,
                    text[: start + left],
                    text[start + left : start + right],
                    text[start + right :],
                )
            )
    return tuple(splits)


def test_real_code_gives_back_the_true_middle() -> None:
    splits = real_splits()
    rng = random.Random(1)
    excluded = [split for split in splits if split.has_control_text()]
    failures = []
    for split in splits:
        if split.has_control_text():
            continue
        ends = split.echo_ends()
        # the model echoes 1..3 whole lines of the suffix, or is cut off past the first line
        echoes = [split.middle + split.suffix[:end] for end in ends]
        echoes.append(split.middle + split.suffix[: rng.randint(ends[0], ends[-1])])
        args = (split.prefix, split.suffix)
        answers = [postprocess(split.middle, *args, ended=True)]
        answers += [postprocess(echo, *args, ended=False) for echo in echoes]
        failures += [(split, answer) for answer in answers if answer != split.middle]
    print(f"real code: {len(splits) - len(excluded)} positions checked, {len(excluded)} excluded")
    assert len(splits) == FILES * POSITIONS_PER_FILE
    assert len(excluded) < 0.01 * len(splits)
    assert not failures, failures[:5]


def test_real_code_should_stop_is_consistent_and_stops_on_echo() -> None:
    stops = 0
    for split in real_splits():
        if split.has_control_text():
            continue
        args = (split.prefix, split.suffix)
        echoed = split.suffix[: split.echo_ends()[-1]]
        completion = split.middle + echoed + "\nextra = (1)\n"
        tokens = _TOKEN.findall(completion)
        first_stop = None
        for count in range(1, len(tokens) + 1):
            head = "".join(tokens[:count])
            if should_stop(head, *args):
                first_stop = len(head) if first_stop is None else first_stop
                answer = postprocess(head, *args, ended=False)
                for tail in (completion[len(head) :], "))\n", "\n}\nx"):
                    assert postprocess(head + tail, *args, ended=False) == answer, split
        if echoed.strip():
            # a whole non-blank line of the suffix was echoed: generation need not go on
            assert first_stop is not None, split
            assert postprocess(completion[:first_stop], *args, ended=False) == split.middle
            stops += 1
    assert stops > 0.9 * len(real_splits())


_PIECES = st.sampled_from(
    ["a", "b", "x = 1", " ", "    ", "\t", "\n", "(", ")", "{", "}", ":", "'", "#", "<", "EOT>"]
)
_TEXT = st.lists(_PIECES, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(prefix=_TEXT, suffix=_TEXT, completion=_TEXT, more=_TEXT)
def test_should_stop_is_consistent(prefix: str, suffix: str, completion: str, more: str) -> None:
    if should_stop(completion, prefix, suffix):
        expected = postprocess(completion, prefix, suffix, ended=False)
        assert postprocess(completion + more, prefix, suffix, ended=False) == expected


def test_is_single_line() -> None:
    assert is_single_line("x = f(", ")\nmore")
    assert is_single_line("x = ", "  1")
    assert not is_single_line("def f():", "\n    pass")
    assert not is_single_line("x = ", "   \t\ny")
    assert not is_single_line("x", "")


def test_closer_the_suffix_supplies_is_dropped() -> None:
    for ended in (True, False):
        assert postprocess("bar)", "print(foo", ")", ended=ended) == "bar"
        assert postprocess("a))", "f(x, g(", "))\n", ended=ended) == "a"


def test_balanced_closers_are_kept() -> None:
    assert postprocess("a)", "f(g(", ")", ended=True) == "a)"
    assert postprocess("b)", "foo(bar(x),\n    baz(", ")\n", ended=True) == "b)"
    # inside a string or a docstring the closers are text
    assert postprocess("b)", 'x = f("a(', ')")', ended=True) == "b)"
    assert postprocess("b)", '"""Return a', ") value.\n", ended=True) == "b)"


def test_single_line_mode_cuts_at_the_line_end() -> None:
    prefix, suffix = "total = ", "  # the sum\nprint(total)\n"
    assert postprocess("a + b\nc = 2\n", prefix, suffix, ended=False) == "a + b"
    assert postprocess("a + b", prefix, suffix, ended=False) == "a + b"
    assert not should_stop("a + b", prefix, suffix)
    # the line's end is final: generation stops there, with no grace lines
    assert should_stop("a + b\n", prefix, suffix)
    assert postprocess("a + b\nc = 2\nd = 3\ne = 4\n", prefix, suffix, ended=False) == "a + b"


def test_echo_of_the_suffix_is_cut_unless_the_model_ended() -> None:
    prefix, suffix = "x = compute(", "args)\nprint(x)\n"
    assert postprocess("1, args)\nprint(x)\ny = 2", prefix, suffix, ended=False) == "1, "
    assert postprocess("1, ar", prefix, suffix, ended=False) == "1, "  # cut off while echoing
    assert postprocess("1, args)", prefix, suffix, ended=True) == "1, args)"


_LEAVES_THE_LOOP = (  # a middle that leaves the loop's block for the function's return
    "def f(numbers, threshold):\n",
    "    for n in numbers:\n        if n < threshold:\n            return True\n\n    return False",
)


def test_a_middle_the_model_ended_is_kept_across_lines_and_blocks() -> None:
    # text follows the cursor, yet the model ended a middle that spans lines
    prefix, suffix = "    for idx, elem in enume", "rate(numbers):\n        pass\n"
    middle = "rate(numbers):\n        for idx2, elem2 in enume"
    assert postprocess(middle, prefix, suffix, ended=True) == middle
    # the middle leaves the loop's block (HumanEval/0)
    prefix, middle = _LEAVES_THE_LOOP
    assert postprocess(middle, prefix, "\n", ended=True) == middle
    assert postprocess(middle, prefix, "\n", ended=False) == middle[: middle.index("\n\n")]
    # a closing brace and the next statement, in C
    middle = "y();\n}\nz();"
    assert postprocess(middle, "if (x) {\n    ", "\n\nw();\n", ended=True) == middle


def test_what_an_ended_middle_still_loses() -> None:
    # control text never reaches the document; a closer the suffix supplies is not doubled
    assert postprocess("a\nb<EOT>c", "x = ", "\n", ended=True) == "a\nb"
    assert postprocess("1,\n    2)", "f(", ")\n", ended=True) == "1,\n    2"
    assert postprocess("1,\n    2)", "f((", ")\n", ended=True) == "1,\n    2)"


def test_an_ended_middle_that_leaves_its_block_is_not_stopped_early() -> None:
    """Within GRACE_LINES lines past a block's end, the model can still reach its <EOT>."""
    prefix, middle = _LEAVES_THE_LOOP
    assert not any(should_stop(middle[:end], prefix, "\n") for end in range(len(middle) + 1))


def test_an_echo_past_a_boundary_marks_the_end_within_the_grace_lines() -> None:
    prefix = "def f(xs):\n    total = 0\n    for x in xs:\n        "
    suffix = "\n    return total\n"
    middle = "total += x\n    total *= 2"
    assert postprocess(middle + suffix, prefix, suffix, ended=False) == middle
    assert should_stop(middle + suffix, prefix, suffix)
    # more new lines than GRACE_LINES past the block's end: the block's end is the cut
    rambling = middle + "\n    a = 1\n    b = 2\n    c = 3" + suffix
    assert GRACE_LINES == 3
    assert postprocess(rambling, prefix, suffix, ended=False) == "total += x"
    # in single-line mode an echo on a later line does not count: the line's end is final
    prefix, suffix = "x = f(", "a, b)\nprint(x)\n"
    assert postprocess("1)\ny = f(a, b)\n", prefix, suffix, ended=False) == "1)"


def test_an_echo_of_only_punctuation_past_a_boundary_is_no_evidence() -> None:
    prefix, suffix = "if n % i == 0", ":\n    return False\n"
    # before the line's end it is evidence enough; past it, ":" ends many lines
    assert postprocess(" and n > 1:\n    return True\n", prefix, suffix, ended=False) == (
        " and n > 1"
    )
    assert postprocess(" and n > 1\ndef g():\n", prefix, suffix, ended=False) == " and n > 1"


def test_a_line_end_before_a_new_line_is_dropped() -> None:
    prefix, suffix = "def f():\n    ", "\n    return x\n"
    assert postprocess("x = 1\n", prefix, suffix, ended=False) == "x = 1"
    assert postprocess("x = 1\n", prefix, suffix, ended=True) == "x = 1\n"
    assert postprocess("x = 1\n\n", "x = 0\n", "", ended=False) == "x = 1\n"


def test_python_block_ends_at_dedent() -> None:
    prefix = "def area(r):\n    "
    suffix = "\n\ndef main():\n    print(area(2))\n"
    completion = "return 3.14 * r * r\n\n\ndef perimeter(r):\n    return 2 * 3.14 * r\n"
    assert postprocess(completion, prefix, suffix, ended=False) == "return 3.14 * r * r"
    assert not should_stop(completion, prefix, suffix)  # 2 of the GRACE_LINES lines
    assert not should_stop(completion + "\n\ndef volume(r):\n", prefix, suffix)  # "\n\nd"?
    assert should_stop(completion + "\n\ndef volume(r):\n    return", prefix, suffix)


def test_block_body_after_opener_ends_at_same_indentation() -> None:
    prefix, suffix = "class A:\n    def f(self):", "\n\n    def g(self):\n        pass\n"
    completion = "\n        return 1\n\n    def h(self):\n        return 2"
    assert postprocess(completion, prefix, suffix, ended=False) == "\n        return 1"
    assert should_stop(completion + "\n\n    def i(self):\n        return 3", prefix, suffix)


def test_comment_ending_in_colon_opens_no_block() -> None:
    completion = "\n    y = 2\n    z = 3"
    assert postprocess(completion, "def f():\n    # steps:", "\n", ended=True) == completion


def test_c_block_keeps_its_closing_brace_unless_the_suffix_has_it() -> None:
    prefix = "int square(int x) {"
    completion = "\n    return x * x;\n}\n\nint cube(int x) {\n    return x * x * x;\n}\n"
    expected = "\n    return x * x;\n}"
    assert postprocess(completion, prefix, "\n\nint main(void) {}\n", ended=False) == expected
    assert postprocess(completion, prefix, "\n}\n", ended=False) == "\n    return x * x;"
    # typed inside an empty block whose closing brace the editor already inserted
    inside = "if (x) {\n    "
    assert postprocess("y();\n}\nz();", inside, "\n}\n", ended=False) == "y();"
    assert postprocess("y();\n}\nz();", inside, "\n\nw();\n", ended=False) == "y();\n}"
    assert not should_stop("y();\n}", inside, "\n\nw();\n")  # "}" may go on as "} else {"
    assert should_stop("y();\n}\nz();\nu();\nv();\nq", inside, "\n\nw();\n")


def test_control_pieces_never_reach_the_document() -> None:
    assert postprocess("foo()<EOT>bar", "x = ", "\n", ended=True) == "foo()"
    assert postprocess("a<PRE>b<SUF>c<MID>d", "", "", ended=False) == "a"
    assert should_stop("foo()<EOT>", "x = ", "\n")
    assert not should_stop("foo()<EO", "x = ", "\n")


def test_to_document_style_crlf_and_tabs() -> None:
    text = "if x:\n    y()\n        z()\n"
    assert to_document_style(text, "\r\n", "\t") == "if x:\r\n\ty()\r\n\t\tz()\r\n"
    tabbed = "if x:\n\ty()\n\t\tz()"
    assert to_document_style(tabbed, "\n", "  ") == "if x:\n  y()\n    z()"
    assert to_document_style(tabbed, "\r", "\t") == "if x:\r\ty()\r\t\tz()"
    # the first line continues the cursor's line and keeps its spacing
    assert to_document_style("\t# note\n    x", "\n", "\t") == "\t# note\n\tx"


def test_to_document_style_is_idempotent() -> None:
    for eol in ("\n", "\r\n", "\r"):
        for indent in ("\t", "  ", "    "):
            once = to_document_style("a:\n    b\n\tc\n  d", eol, indent)
            assert to_document_style(once, eol, indent) == once


def test_detect_indent() -> None:
    assert detect_indent("def f():\n    if x:\n        y()\n    return\n") == "    "
    assert detect_indent("function f() {\n  if (x) {\n    y();\n  }\n}\n") == "  "
    assert detect_indent("int f() {\n\tif (x) {\n\t\ty();\n\t}\n}\n") == "\t"
    assert detect_indent("x = 1\n") == "    "
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert detect_indent((stdlib / "random.py").read_text(encoding="utf-8")) == "    "


def test_a_statement_in_progress_is_finished_not_followed():
    prefix = "import os\n\ntotal = add(fir"
    completion = 'st, second)\n\ndef _format(prefix):\n    """\n    Return'
    assert postprocess(completion, prefix, "", ended=False) == "st, second)"
    body = "def f(a):\n    "
    assert postprocess("x = a\n    y = x\n    return y\n", body, "", ended=True) == (
        "x = a\n    y = x\n    return y\n"
    )


def test_asking_again_shows_a_kept_middle_piece_by_piece() -> None:
    """After the shown part is accepted, the next piece of a kept middle is shown: past the line
    break it starts with (single-line mode: the next line; a block: the next block), cut by the
    early stop; whitespace that ends a middle the model ended is shown too."""
    prefix, suffix = "def f(xs):\n    total = 0\n    for x in xs:\n        total += x", ")\n"
    kept = "\n    if total:\n        return total\n    return -1"
    assert shown_part(kept, prefix, suffix, ended=True) == "\n    if total:"
    prefix, suffix = "def f(xs):\n    for x in xs:\n        print(x)", "\n"
    kept = "\n    total = sum(xs)\n    return total"
    assert shown_part(kept, prefix, suffix, ended=True) == kept
    assert shown_part("\n    ", prefix, suffix, ended=True) == "\n    "
    assert shown_part("\n    ", prefix, suffix, ended=False) == ""
    rambling = "\n    return xs\n\n\ndef g():\n    pass\n\n\ndef h():\n    pass\n"
    assert shown_part(rambling, prefix, suffix, ended=False) == "\n    return xs"
