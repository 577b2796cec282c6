"""Engines turn prompt ids into generated ids: in this process (torch), or on a server."""
