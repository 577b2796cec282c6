"""The Language Server Protocol side: the server, its handlers, framing and replies."""
