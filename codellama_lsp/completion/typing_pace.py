"""How long an automatic request waits before it starts: the typist's own pace, not a constant.

A fixed debounce shorter than the gaps between keystrokes starts a generation on every key, only
for the next key to supersede it: at 80 ms a key and a 50 ms debounce, 95% of the tokens
generated were thrown away. Waiting a little longer than the typist's recent typical gap lets
the next keystroke arrive first, so a burst costs one generation; a typist who pauses gets the
answer after the same short wait as before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

GAPS = 8
"""Recent gaps between automatic requests that set the pace."""
PAUSE_S = 0.6
"""A longer gap is a pause, not typing: it does not count."""
HEADROOM = 1.25
MAX_WAIT_S = 0.3
"""However slow the typing, an automatic request never waits longer (unless debounceMs says so)."""


@dataclass
class TypingPace:
    """The times of recent automatic requests, in any document."""

    last: float | None = None
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=GAPS))

    def wait(self, now: float, debounce_s: float) -> float:
        """Record a request at `now`; how long it should wait for the next keystroke."""
        if self.last is not None and 0 <= now - self.last < PAUSE_S:
            self.gaps.append(now - self.last)
        self.last = now
        if not self.gaps:
            return debounce_s
        typical = sorted(self.gaps)[(3 * len(self.gaps)) // 4]  # the 75th percentile
        return max(debounce_s, min(HEADROOM * typical, MAX_WAIT_S))
