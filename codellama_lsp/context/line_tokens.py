"""Token ids of lines, remembered: a window re-tokenizes the same lines every keystroke."""

from __future__ import annotations

import sys
from array import array

from codellama_lsp.bounded_memo import BoundedMemo
from codellama_lsp.checkpoint.tokenizer import FimTokenizer

LINE_COUNT_MEMO_BYTES = 8 * 2**20
"""What the line-token memo may hold: a window of 100,000 tokens is well under 1 MiB of text, and
one long line edited keystroke by keystroke adds a new entry of its whole length each time."""


class LineTokenCounter:
    """Called, it counts a line's tokens (how the window is fitted); `ids` gives the ids the
    prompt is assembled from, so a keystroke tokenizes only the lines it changed.
    """

    def __init__(self, tokenizer: FimTokenizer) -> None:
        self._tokenizer = tokenizer
        self._memo: BoundedMemo[str, array[int]] = BoundedMemo(LINE_COUNT_MEMO_BYTES, _entry_bytes)

    @property
    def nbytes(self) -> int:
        """What the memo holds, bounded by LINE_COUNT_MEMO_BYTES (least recently used go first)."""
        return self._memo.nbytes

    def __call__(self, text: str) -> int:
        return len(self.ids(text))

    def ids(self, text: str) -> array[int]:
        """`encode_infilling(text)`, kept as 4-byte ids (a tuple of ints would take 36 each)."""
        ids = self._memo.get(text)
        if ids is None:
            ids = array("I", self._tokenizer.encode_infilling(text))
            self._memo.put(text, ids)
        return ids


def _entry_bytes(text: str, ids: array[int]) -> int:
    return sys.getsizeof(text) + sys.getsizeof(ids)
