"""From a cursor to prompt ids: the window around it, other files' snippets, the prompt."""
