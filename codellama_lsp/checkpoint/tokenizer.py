"""Code Llama-format tokenizers, loaded without transformers' `CodeLlamaTokenizer`.

That class builds infilling prompts that differ from the ones Code Llama was trained on (an extra
`▁` before the suffix, dropped markers on an empty suffix, an id past the embedding table), so
this module reads `tokenizer.json` (through `tokenizers`) or `tokenizer.model` (through
sentencepiece) itself and exposes the two encodings the reference recipe needs.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from codellama_lsp.checkpoint.files import TOKENIZER_FILES, ModelFilesError, resolve_model_folder

MARKERS = ("<PRE>", "<SUF>", "<MID>", "<EOT>")
INFILL_PIECES = {"pre": "▁<PRE>", "suf": "▁<SUF>", "mid": "▁<MID>", "eot": "▁<EOT>"}
# A character that never merges with what follows it, so `encode(SENTINEL + s)` minus the
# sentinel's own tokens encodes `s` without the implied leading space (the reference recipe).
SENTINEL = "☺"
# A str holds a surrogate only when it is lone (JSON's "\ud800" escapes can carry one).
_SURROGATE = re.compile("[\ud800-\udfff]")


class TokenizerError(Exception):
    """A tokenizer that cannot be loaded or cannot infill; the message is meant for the user."""


class _Backend(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def pieces(self) -> list[str]: ...
    def bos_id(self) -> int: ...
    def eos_id(self) -> int: ...


class _TokenizersBackend:
    """`tokenizer.json`; special tokens in file text are encoded as text, never as control ids."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.encode_special_tokens = True
        self._tok.no_truncation()
        self._tok.no_padding()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids if text else []

    def pieces(self) -> list[str]:
        size = self._tok.get_vocab_size(with_added_tokens=True)
        return [self._tok.id_to_token(i) or "" for i in range(size)]

    def bos_id(self) -> int:
        return self._special_id("<s>")

    def eos_id(self) -> int:
        return self._special_id("</s>")

    def _special_id(self, piece: str) -> int:
        token_id = self._tok.token_to_id(piece)
        if token_id is None:
            raise TokenizerError(f"the tokenizer has no {piece} token")
        return token_id


class _SentencePieceBackend:
    """`tokenizer.model`: the reference recipe's own encoder."""

    def __init__(self, path: Path) -> None:
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text) if text else []

    def pieces(self) -> list[str]:
        return [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def bos_id(self) -> int:
        return self._sp.bos_id()

    def eos_id(self) -> int:
        return self._sp.eos_id()


@dataclass(frozen=True)
class InfillIds:
    bos: int
    eos: int
    pre: int
    suf: int
    mid: int
    eot: int


class FimTokenizer:
    """Encodes file text for infilling prompts and decodes generated ids, byte-exactly."""

    def __init__(self, backend: _Backend, source: str) -> None:
        self._backend = backend
        self.source = source
        pieces = backend.pieces()
        index = {piece: i for i, piece in enumerate(pieces)}
        missing = [p for p in INFILL_PIECES.values() if p not in index]
        if missing:
            raise TokenizerError(
                f"{source} is not a Code Llama infilling tokenizer: it has no "
                f"{', '.join(missing)} piece (use a Code Llama base or instruct checkpoint)"
            )
        self.ids = InfillIds(
            bos=backend.bos_id(),
            eos=backend.eos_id(),
            **{name: index[piece] for name, piece in INFILL_PIECES.items()},
        )
        self._piece_bytes = [_piece_bytes(p) for p in pieces]
        # Ids that file text must never turn into: the markers (and pieces that contain them,
        # such as `▁<EOT><EOT>`), and the sequence delimiters.
        self.control_ids = frozenset(
            {i for i, p in enumerate(pieces) if any(m in p for m in MARKERS)}
            | {self.ids.bos, self.ids.eos}
        )
        self.max_piece_chars = max(
            (len(p.decode("utf-8", "replace")) for i, p in enumerate(self._piece_bytes)
             if i not in self.control_ids),
            default=1,
        )  # fmt: skip
        """The most characters a token of file text spans: `n` tokens never need more than
        `n * max_piece_chars` characters, so a window of `n` tokens need not encode more."""
        self.lines_tokenize_alone = not any("\n" in piece for piece in pieces)
        """No piece holds a newline, so no token spans a line break (true of Code Llama's)."""
        self._byte_ids = {b: index.get(f"<0x{b:02X}>") for b in range(256)}
        self._sentinel_ids = backend.encode(SENTINEL)
        self._spelling: dict[bytes, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self._piece_bytes)

    def encode(self, text: str) -> list[int]:
        """Plain encoding, with the implied leading space; file text never yields a control id."""
        return self._neutralize(self._backend.encode(_without_surrogates(text)))

    def encode_infilling(self, text: str) -> list[int]:
        """Encoding without the implied leading space, as the reference encodes suffixes."""
        if not text:
            return []
        ids = self._backend.encode(SENTINEL + _without_surrogates(text))
        head = len(self._sentinel_ids)
        if ids[:head] != self._sentinel_ids:
            raise TokenizerError(f"{self.source}: the sentinel {SENTINEL!r} merged with the text")
        return self._neutralize(ids[head:])

    def decode_bytes(self, ids: list[int]) -> bytes:
        """The exact bytes of `ids` (no stripped leading space), for incremental decoding."""
        return b"".join(self._piece_bytes[i] for i in ids)

    def ids_spelling_start(self, text: bytes) -> list[int]:
        """Ids whose bytes begin with `text` or are a beginning of it (token healing's choices)."""
        found = self._spelling.get(text)
        if found is None:
            found = [
                i
                for i, piece in enumerate(self._piece_bytes)
                if piece
                and i not in self.control_ids
                and (piece.startswith(text) or text.startswith(piece))
            ]
            if len(self._spelling) > 256:
                self._spelling.clear()
            self._spelling[text] = found
        return found

    def decode(self, ids: list[int]) -> str:
        return self.decode_text(self.decode_bytes(ids))

    @staticmethod
    def decode_text(data: bytes) -> str:
        """The text of `data`, without a trailing character whose bytes are still incomplete."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return decoder.decode(data, final=False)

    def _neutralize(self, ids: list[int]) -> list[int]:
        """Spell any control id that file text produced as byte tokens of the same text."""
        if not self.control_ids.intersection(ids):
            return ids
        out: list[int] = []
        for token_id in ids:
            if token_id not in self.control_ids:
                out.append(token_id)
                continue
            byte_ids = [self._byte_ids[b] for b in self._piece_bytes[token_id]]
            if None in byte_ids:
                raise TokenizerError(f"{self.source} cannot spell marker text as bytes")
            out.extend(i for i in byte_ids if i is not None)
        return out


def _without_surrogates(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, one for one so offsets stay put.

    Neither backend can encode a lone surrogate (it has no UTF-8), and one in a window would
    fail every completion of the document.
    """
    return _SURROGATE.sub("\ufffd", text)


def _piece_bytes(piece: str) -> bytes:
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    if piece in ("<s>", "</s>", "<unk>"):
        return b""
    return piece.replace("▁", " ").encode("utf-8")


def load_tokenizer(model: str) -> FimTokenizer:
    """The tokenizer of `model` (hub id, local folder or shipped name); needs no weights."""
    try:
        folder = resolve_model_folder(model, TOKENIZER_FILES)
    except ModelFilesError as error:
        # One error type for callers: the message already names the model and what is wrong.
        raise TokenizerError(str(error)) from error
    for name, backend in (
        ("tokenizer.json", _TokenizersBackend),
        ("tokenizer.model", _SentencePieceBackend),
    ):
        if (folder / name).is_file():
            return FimTokenizer(backend(folder / name), str(folder / name))
    raise TokenizerError(f"{folder} has no tokenizer.json or tokenizer.model")
