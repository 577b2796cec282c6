"""Code Llama infilling prompts, exactly as the model was trained on them.

PSM: `[BOS, PRE] + encode(prefix) + [SUF] + encode_infilling(suffix) + [MID]`
SPM: `[BOS, PRE, SUF] + encode_infilling(suffix) + [MID] + encode(prefix)`

Suffix-first (SPM) is the default: it did better on single-line infilling in the Code Llama paper,
and the prompt then ends with the prefix, so the cached prompt grows as the user types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from codellama_lsp.checkpoint.tokenizer import FimTokenizer

Order = Literal["spm", "psm"]


MARKER_TOKENS = 4  # BOS, PRE, SUF, MID


def build_prompt(
    tokenizer: FimTokenizer, prefix: str, suffix: str, order: Order, budget: int | None = None
) -> list[int]:
    """The prompt ids of `prefix` and `suffix`, each tokenized whole (see `assemble_prompt`)."""
    return assemble_prompt(
        tokenizer, tokenizer.encode(prefix), tokenizer.encode_infilling(suffix), order, budget
    )


def encode_lines(
    tokenizer: FimTokenizer, lines: Sequence[str], line_ids: Callable[[str], Sequence[int]]
) -> list[int]:
    """`tokenizer.encode("".join(lines))`, from each line's own ids, for `lines` ending in "\n".

    No piece of Code Llama's vocabulary holds a newline (it is the byte token `<0x0A>`), so
    no token spans a line break and a line's ids do not depend on its neighbours: the first
    line is encoded plainly (it carries the implied leading space), the others are
    `line_ids`, their `encode_infilling`, which a caller can keep between keystrokes.
    """
    if not lines:
        return []
    ids = tokenizer.encode(lines[0])
    for text in lines[1:]:
        ids.extend(line_ids(text))
    return ids


def encode_infilling_lines(
    lines: Sequence[str], line_ids: Callable[[str], Sequence[int]]
) -> list[int]:
    """`tokenizer.encode_infilling("".join(lines))` from each line's own ids (as above)."""
    ids: list[int] = []
    for text in lines:
        ids.extend(line_ids(text))
    return ids


def assemble_prompt(
    tokenizer: FimTokenizer,
    prefix_ids: list[int],
    suffix_ids: list[int],
    order: Order,
    budget: int | None = None,
) -> list[int]:
    """The prompt ids; with `budget`, prefix and suffix are cut at their far ends to fit it.

    The context window fits whole lines by per-line token counts, which can differ slightly from
    the count of the joined text, and one very long line can exceed any budget alone: the budget
    here is the hard cap.
    """
    if budget is not None:
        room = max(budget - MARKER_TOKENS, 0)
        if len(prefix_ids) + len(suffix_ids) > room:
            keep_suffix = min(len(suffix_ids), max(room // 4, room - len(prefix_ids)))
            keep_prefix = room - keep_suffix
            prefix_ids = prefix_ids[len(prefix_ids) - keep_prefix :]
            suffix_ids = suffix_ids[:keep_suffix]
    marks = tokenizer.ids
    if order == "psm":
        return [marks.bos, marks.pre, *prefix_ids, marks.suf, *suffix_ids, marks.mid]
    return [marks.bos, marks.pre, marks.suf, *suffix_ids, marks.mid, *prefix_ids]


def render_prompt(tokenizer: FimTokenizer, prompt: list[int]) -> str:
    """The prompt as text, markers spelled out, for users who want to see what the model sees."""
    names = {tokenizer.ids.bos: "<s>", tokenizer.ids.eos: "</s>"}
    parts: list[str] = []
    run: list[int] = []
    for token_id in prompt:
        if token_id in tokenizer.control_ids:
            parts.append(tokenizer.decode(run))
            run = []
            parts.append(names.get(token_id) or tokenizer.decode([token_id]))
        else:
            run.append(token_id)
    parts.append(tokenizer.decode(run))
    return "".join(parts)


def heal(tokenizer: FimTokenizer, prompt: list[int], order: Order) -> tuple[list[int], bytes]:
    """Token healing: back off the prompt's last prefix token; generation must spell its bytes.

    A cursor in the middle of a word leaves a token (`▁ret`) that the model rarely saw followed
    by the rest of its word: as `▁return` is one token, `▁ret` + `urn` is unlikely. Backing it
    off and constraining the first generated tokens to start with its text lets the model pick
    `▁return`. Only for suffix-first prompts, which end with the prefix; a prefix of one token
    keeps it (its bytes hold the implied leading space, not text of the file).
    """
    if order != "spm":
        return prompt, b""
    prefix_tokens = len(prompt) - prompt.index(tokenizer.ids.mid) - 1
    if prefix_tokens < 2:
        return prompt, b""
    return prompt[:-1], tokenizer.decode_bytes(prompt[-1:])
