"""The documents the editor has open: their text and positions, and which may be shared."""
