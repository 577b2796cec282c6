"""Shared by the editor tests."""

# The document both the Neovim and the Emacs tests edit: the cursor ends line 8 (0-based),
# after the partial word `fir`, behind an emoji and CJK text, so a wrong position encoding
# moves every column.
SOURCE = """import os


def add(first, second):
    return first + second


first = 1
label = "😀 漢字"; total = add(fir
print(label, total)
"""
LINE = 8
WORD = "fir"
