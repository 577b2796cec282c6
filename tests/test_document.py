"""Tests for `codellama_lsp.documents.text_document`: LSP 3.17 lines, positions and edits."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types

from codellama_lsp.documents.text_document import TextDocument

ENCODINGS = ("utf-8", "utf-16", "utf-32")


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def doc(text: str) -> TextDocument:
    return TextDocument("file:///t.py", "python", 1, text)


def edit(
    document: TextDocument,
    start: tuple[int, int],
    end: tuple[int, int],
    text: str,
    encoding="utf-16",
) -> None:
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=pos(*start), end=pos(*end)), text=text
    )
    document.apply_change(change, encoding)


# --- Line splitting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("", [""]),
        ("a", ["a"]),
        ("a\n", ["a\n", ""]),
        ("a\r\nb\r\n", ["a\r\n", "b\r\n", ""]),
        ("a\rb\rc", ["a\r", "b\r", "c"]),
        ("a\r\rb", ["a\r", "\r", "b"]),
        ("a\n\rb", ["a\n", "\r", "b"]),
        ("a\r\n\nb\r", ["a\r\n", "\n", "b\r", ""]),
    ],
)
def test_lines_split_on_crlf_cr_and_lf(text, lines):
    document = doc(text)
    assert document.lines == lines
    assert document.text == text


@pytest.mark.parametrize(
    "char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_other_unicode_line_breaks_are_ordinary_characters(char):
    document = doc(f"a{char}b\nc")
    assert document.lines == [f"a{char}b\n", "c"]
    assert document.line_text(0) == f"a{char}b"
    assert document.location(pos(0, 3), "utf-16") == (0, 3)


def test_line_text_strips_only_the_terminator():
    document = doc("a\r\n\tb\rc\n")
    assert [document.line_text(i) for i in range(4)] == ["a", "\tb", "c", ""]


# --- Edits that create, merge and remove terminators ------------------------------------------


def test_inserting_lf_after_a_lone_cr_merges_into_crlf():
    document = doc("a\rb")
    edit(document, (1, 0), (1, 0), "\nx")
    assert document.lines == ["a\r\n", "xb"]


def test_removing_text_between_cr_and_lf_merges_into_crlf():
    document = doc("a\rxy\nb")
    edit(document, (1, 0), (1, 2), "")
    assert document.lines == ["a\r\n", "b"]


def test_removing_whole_lines_between_cr_and_lf_merges_into_crlf():
    document = doc("a\rx\ny\n\nb")
    edit(document, (1, 0), (3, 0), "")
    assert document.lines == ["a\r\n", "b"]


def test_inserting_cr_before_lf_makes_crlf():
    document = doc("a\nb")
    edit(document, (0, 1), (0, 1), "\r")
    assert document.lines == ["a\r\n", "b"]


def test_inserting_between_lone_cr_lines_keeps_them_apart():
    document = doc("a\r\rb")
    edit(document, (1, 0), (1, 0), "x")
    assert document.lines == ["a\r", "x\r", "b"]


def test_deleting_a_terminator_joins_lines():
    document = doc("a\r\nb\nc")
    edit(document, (0, 1), (1, 0), "")
    assert document.lines == ["ab\n", "c"]


def test_a_position_cannot_split_crlf():
    document = doc("a\r\nb")
    edit(document, (0, 2), (0, 7), "x")  # past the end of line 0: before its "\r\n"
    assert document.lines == ["ax\r\n", "b"]


def test_multiline_replacement_in_the_middle():
    document = doc("one\ntwo\nthree\nfour")
    edit(document, (1, 1), (2, 2), "X\r\nY\rZ")
    assert document.lines == ["one\n", "tX\r\n", "Y\r", "Zree\n", "four"]


def test_edit_at_end_of_document_and_past_it():
    document = doc("a\nb")
    edit(document, (1, 1), (1, 1), "\n")
    assert document.lines == ["a\n", "b\n", ""]
    edit(document, (9, 0), (12, 4), "c")
    assert document.text == "a\nb\nc"


def test_whole_document_change_replaces_everything():
    document = doc("a\nb")
    document.apply_change(types.TextDocumentContentChangeWholeDocument(text="x\r\ny"), "utf-8")
    assert document.lines == ["x\r\n", "y"]
    assert document.eol() == "\r\n"


def test_apply_change_leaves_identity_and_version_to_the_caller():
    document = doc("a")
    edit(document, (0, 0), (0, 1), "b")
    assert (document.uri, document.language_id, document.version) == (
        "file:///t.py",
        "python",
        1,
    )


def test_encoding_may_be_the_lsprotocol_enum():
    document = doc("😀x")
    edit(document, (0, 2), (0, 2), "y", types.PositionEncodingKind.Utf16)
    assert document.text == "😀yx"


# --- Line terminator of the document ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "eol"),
    [
        ("", "\n"),
        ("abc", "\n"),
        ("a\r\nb\r\nc\n", "\r\n"),
        ("a\rb\rc\r\n", "\r"),
        ("a\r\nb\n", "\n"),  # a tie prefers "\n"
    ],
)
def test_eol_is_the_dominant_terminator(text, eol):
    assert doc(text).eol() == eol


def test_eol_follows_edits():
    document = doc("a\r\nb\r\nc\n")
    edit(document, (0, 1), (2, 0), "\n\n")
    assert document.text == "a\n\nc\n"
    assert document.eol() == "\n"
    edit(document, (1, 0), (1, 0), "\r")  # "\r" + "\n" of line 1 -> "\r\n"
    edit(document, (0, 1), (0, 1), "\r")
    assert document.eol() == "\r\n"


# --- Positions in the three encodings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "character", "column"),
    [
        ("utf-16", 1, 1),
        ("utf-16", 2, 1),  # inside the surrogate pair: rounds down
        ("utf-16", 3, 2),
        ("utf-16", 4, 3),
        ("utf-8", 2, 1),
        ("utf-8", 4, 1),
        ("utf-8", 5, 2),
        ("utf-8", 6, 3),
        ("utf-32", 2, 2),
        ("utf-32", 3, 3),
    ],
)
def test_emoji_location(encoding, character, column):
    assert doc("a😀b").location(pos(0, character), encoding) == (0, column)


@pytest.mark.parametrize(
    ("encoding", "characters"),
    [("utf-16", [0, 1, 3, 4]), ("utf-8", [0, 1, 5, 6]), ("utf-32", [0, 1, 2, 3])],
)
def test_emoji_position(encoding, characters):
    document = doc("a😀b")
    assert [document.position(0, c, encoding).character for c in range(4)] == characters


@pytest.mark.parametrize(
    ("character", "column"), [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1), (6, 2), (7, 3)]
)
def test_cjk_utf8_location_rounds_down_inside_a_character(character, column):
    assert doc("漢字x").location(pos(0, character), "utf-8") == (0, column)


def test_cjk_utf8_position():
    document = doc("漢字x")
    assert [document.position(0, c, "utf-8").character for c in range(4)] == [0, 3, 6, 7]
    assert [document.position(0, c, "utf-16").character for c in range(4)] == [0, 1, 2, 3]


def test_combining_mark_counts_as_its_own_code_point():
    document = doc("e\u0301x")
    assert document.location(pos(0, 2), "utf-16") == (0, 2)
    assert document.location(pos(0, 2), "utf-8") == (0, 1)  # inside U+0301's two bytes
    assert document.position(0, 2, "utf-8") == pos(0, 3)


def test_edit_replaces_an_emoji_by_utf16_range():
    document = doc("x😀y\n😀")
    edit(document, (0, 1), (0, 3), "z")
    edit(document, (1, 2), (1, 2), "!")
    assert document.text == "xzy\n😀!"


def test_edit_inside_a_utf8_sequence_rounds_both_ends_down():
    document = doc("漢字")
    edit(document, (0, 1), (0, 5), "-", "utf-8")  # -> columns 0 .. 1
    assert document.text == "-字"


def test_surrogate_halves_sent_in_two_edits_become_one_character():
    """The halves of 😀 typed after 🎉 as two edits, then more edits on the line (utf-16)."""
    document = doc("🎉")
    edit(document, (0, 2), (0, 2), "\ud83d")
    edit(document, (0, 3), (0, 3), "\ude00")
    edit(document, (0, 4), (0, 4), "Z")
    edit(document, (0, 5), (0, 5), "xy")
    assert document.text == "🎉😀Zxy"
    assert document.position(0, 3, "utf-16") == pos(0, 5)


def test_a_utf16_edit_between_the_halves_of_a_character_splits_it():
    document = doc("a😀b")
    edit(document, (0, 2), (0, 2), "Z")
    assert document.text == "a\ud83dZ\ude00b"
    edit(document, (0, 2), (0, 3), "")
    assert document.text == "a😀b"
    edit(document, (0, 2), (0, 4), "")  # from inside the pair to after the b
    assert document.text == "a\ud83d"


def test_lone_surrogates_do_not_raise():
    document = doc("a\ud83dbc")
    assert document.location(pos(0, 2), "utf-16") == (0, 2)
    assert document.location(pos(0, 4), "utf-8") == (0, 2)
    assert document.position(0, 3, "utf-8") == pos(0, 5)


# --- Positions past the end, and invalid ones -------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_character_past_end_of_line_means_end_of_line(encoding):
    document = doc("ab\r\ncd")
    assert document.location(pos(0, 99), encoding) == (0, 2)
    assert document.location(pos(1, 99), encoding) == (1, 2)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_line_past_the_last_means_end_of_document(encoding):
    assert doc("ab\ncd😀").location(pos(2, 0), encoding) == (1, 3)
    assert doc("ab\n").location(pos(7, 5), encoding) == (1, 0)


@pytest.mark.parametrize(("line", "character"), [(-1, 0), (0, -1), (-2, -2)])
def test_negative_position_raises(line, character):
    with attrs.validators.disabled():  # lsprotocol itself rejects negatives at construction
        negative = types.Position(line=line, character=character)
    document = doc("abc")
    with pytest.raises(ValueError):
        document.location(negative, "utf-16")
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=negative, end=pos(0, 1)), text="x"
    )
    with pytest.raises(ValueError):
        document.apply_change(change, "utf-16")
    assert document.text == "abc"


@pytest.mark.parametrize(("start", "end"), [((0, 2), (0, 1)), ((1, 0), (0, 3)), ((0, 9), (0, 5))])
def test_range_ending_before_its_start_raises(start, end):
    document = doc("abc\ndef")
    with pytest.raises(ValueError):
        edit(document, start, end, "x")
    assert document.text == "abc\ndef"


@pytest.mark.parametrize(("line", "column"), [(-1, 0), (2, 0), (0, -1), (0, 4)])
def test_position_out_of_the_document_raises(line, column):
    with pytest.raises(ValueError):
        doc("abc\nd").position(line, column, "utf-16")


# --- Property test against a naive reference --------------------------------------------------

PIECES = (
    "😀",
    "🎉",
    "\ud83d",  # the halves of 😀 and 🎉, alone
    "\ude00",
    "\udf89",
    "e\u0301",
    "漢字",
    "é",
    "\r\n",
    "\r",
    "\n",
    "\u2028",
    "\x85",
    "\t",
    "a",
    "Z",
    " ",
)
texts = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
EXAMPLES = 200
EDITS_PER_EXAMPLE = 60  # x EXAMPLES = 12,000 edits per encoding, 36,000 per run


def ref_lines(text: str) -> list[str]:
    """Split character by character, the way the spec words it."""
    lines, current, i = [], "", 0
    while i < len(text):
        current += text[i]
        if text[i] == "\r" and text[i + 1 : i + 2] == "\n":
            i += 1
            current += "\n"
        if text[i] in "\r\n":
            lines.append(current)
            current = ""
        i += 1
    return [*lines, current]


def ref_width(char: str, encoding: str) -> int:
    utf8 = len(char.encode("utf-8", "surrogatepass"))
    return {"utf-8": utf8, "utf-16": 1 + (ord(char) > 0xFFFF), "utf-32": 1}[encoding]


def ref_utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def ref_text(utf16: bytes) -> str:
    """Text from UTF-16 code units, as a UTF-16 editor reads them: halves side by side join."""
    return utf16.decode("utf-16-le", "surrogatepass")


def ref_edit(text: str, start: types.Position, end: types.Position, new: str, encoding: str) -> str:
    """`text` after the edit, as the editor has it.

    A UTF-16 editor edits code units, so a range end between the halves of a character splits
    it; in the other encodings a range end inside a character means its start.
    """
    if encoding != "utf-16":
        edited = (
            text[: ref_offset(text, start, encoding)]
            + new
            + text[ref_offset(text, end, encoding) :]
        )
        return ref_text(ref_utf16(edited))
    units = ref_utf16(text)
    first, last = ref_unit_offset(text, start), ref_unit_offset(text, end)
    return ref_text(units[: 2 * first] + ref_utf16(new) + units[2 * last :])


def ref_unit_offset(text: str, position: types.Position) -> int:
    """The UTF-16 unit offset of `position`, clamped to its line, never rounded."""
    lines = ref_lines(text)
    if position.line >= len(lines):
        return len(ref_utf16(text)) // 2
    before = len(ref_utf16("".join(lines[: position.line]))) // 2
    width = len(ref_utf16(lines[position.line].rstrip("\r\n"))) // 2
    return before + min(position.character, width)


def ref_offset(text: str, position: types.Position, encoding: str) -> int:
    """The string offset of `position`: clamp past the end, round down inside a character."""
    lines = ref_lines(text)
    if position.line >= len(lines):
        return len(text)
    offset = sum(len(line) for line in lines[: position.line])
    units = 0
    for char in lines[position.line].rstrip("\r\n"):
        units += ref_width(char, encoding)
        if units > position.character:
            break
        offset += 1
    return offset


def ref_boundaries(text: str, encoding: str) -> list[types.Position]:
    """Every position at a character boundary, ends of lines included."""
    boundaries = []
    for number, line in enumerate(ref_lines(text)):
        units = 0
        boundaries.append(pos(number, 0))
        for char in line.rstrip("\r\n"):
            units += ref_width(char, encoding)
            boundaries.append(pos(number, units))
    return boundaries


def ref_eol(text: str) -> str:
    counts = {"\n": 0, "\r\n": 0, "\r": 0}
    for line in ref_lines(text)[:-1]:
        counts["\r\n" if line.endswith("\r\n") else line[-1]] += 1
    return max(counts, key=counts.__getitem__)


def ref_inside_pairs(text: str) -> list[types.Position]:
    """Every UTF-16 position between the halves of a character."""
    inside = []
    for number, line in enumerate(ref_lines(text)):
        units = 0
        for char in line.rstrip("\r\n"):
            if ord(char) > 0xFFFF:
                inside.append(pos(number, units + 1))
            units += ref_width(char, "utf-16")
    return inside


def draw_position(data: st.DataObject, text: str, encoding: str) -> types.Position:
    """Mostly a boundary position (or, in UTF-16, one inside a pair); else any, maybe inside a
    character or past the end."""
    boundaries = ref_boundaries(text, encoding)
    if data.draw(st.integers(0, 4)):
        inside = ref_inside_pairs(text) if encoding == "utf-16" else []
        return data.draw(st.sampled_from(boundaries + inside))
    line_count = len(ref_lines(text))
    widest = max(position.character for position in boundaries)
    return pos(data.draw(st.integers(0, line_count)), data.draw(st.integers(0, widest + 2)))


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=EXAMPLES, deadline=None)
@given(initial=st.lists(st.sampled_from(PIECES), max_size=30).map("".join), data=st.data())
def test_random_edits_match_a_naive_reference(encoding, initial, data):
    document = doc(initial)
    reference = ref_text(ref_utf16(initial))
    for _ in range(EDITS_PER_EXAMPLE):
        start, end = sorted(
            (draw_position(data, reference, encoding) for _ in range(2)),
            key=lambda position: (position.line, position.character),
        )
        new_text = data.draw(texts)
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=start, end=end), text=new_text
        )
        document.apply_change(change, encoding)
        reference = ref_edit(reference, start, end, new_text, encoding)
        assert document.text == reference
        assert document.lines == ref_lines(reference)
        assert document.eol() == ref_eol(reference)

        probe = draw_position(data, reference, encoding)
        line, column = document.location(probe, encoding)
        assert sum(map(len, document.lines[:line])) + column == ref_offset(
            reference, probe, encoding
        )
        back = document.position(line, column, encoding)
        assert document.location(back, encoding) == (line, column)
        if probe in ref_boundaries(reference, encoding):
            assert back == probe
