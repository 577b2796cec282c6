"""Private, local fill-in-the-middle code completion with Code Llama, over LSP."""

__version__ = "0.1.0"
