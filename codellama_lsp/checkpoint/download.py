"""A model's first download, reported as bytes done of bytes in all.

The hub client reports a snapshot's download through tqdm progress bars that it makes from a
class it is given. The class made here draws nothing: it hands the byte counts to a callback
(the server's work-done progress, the command line's bar on stderr), once per percent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    Bar = tqdm[Any]
else:
    Bar = tqdm  # tqdm is generic only in its stubs

Progress = Callable[[int, int], None]
"""Called with bytes done and bytes in all (the total grows as each file's download starts)."""


def reporting_tqdm(report: Progress) -> type[Bar]:
    """A tqdm class for `snapshot_download(tqdm_class=...)` that reports through `report`.

    The client makes several bars: files fetched, bytes received and bytes written (which of
    the byte bars moves depends on the transfer protocol). The byte bar that has moved furthest
    is the one reported, whenever its whole percentage changes.
    """
    lock = threading.Lock()
    byte_bars: list[Any] = []
    last: list[tuple[int, int] | None] = [None]

    class Reporting(Bar):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # nothing drawn: the callback shows progress
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)
            if kwargs.get("unit") == "B":
                with lock:
                    byte_bars.append(self)

        def update(self, n: float | None = 1) -> bool | None:
            with lock:
                self.done += int(n or 0)
                if self not in byte_bars:
                    return None
                lead = max(byte_bars, key=lambda bar: bar.done)
                total = max(int(lead.total or 0), lead.done)
                shown = (percentage(lead.done, total), total)
                if shown == last[0]:
                    return None
                last[0] = shown
            report(lead.done, total)
            return None

    return Reporting


def percentage(done: int, total: int) -> int:
    return min(100, done * 100 // total) if total else 0


def describe(done: int, total: int) -> str:
    """`1.2 GB of 13.5 GB (9%)`."""
    return f"{_size(done)} of {_size(total)} ({percentage(done, total)}%)"


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if count < scale * 1000:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e9:.1f} GB"
