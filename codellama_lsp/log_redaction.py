"""Secrets never reach a log: the value of every `engineApiKey` is blanked out of each record.

pygls logs every message it receives and sends at debug level (initialize's options,
didChangeConfiguration's settings, the client's workspace/configuration replies), as JSON or as
Python reprs, before our settings have parsed them. Redacting by the key's name catches the
value in every such form, wherever in a message it sits.
"""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"

_VALUE = (
    r"""\\+"(?:[^"\\]|\\+[^"\\])*\\+"|"""  # inside a JSON string, quoted as \"...\"
    r""""(?:[^"\\]|\\.)*"|"""  # JSON, or a repr in double quotes
    r"""'(?:[^'\\]|\\.)*'|"""  # a repr in single quotes
    r"""[^\s,;&}\])'"]+"""  # unquoted: up to the next separator
)
SECRET = re.compile(
    r"""(?P<key>(?:engineApiKey|engine_api_key)\\*["']?\s*[:=]\s*)(?:""" + _VALUE + ")"
    r"""|(?P<scheme>Bearer\s+)[^\s'",]+""",
    re.IGNORECASE,
)
"""A secret-bearing key and its value (a JSON member, a dict repr's item, an attrs repr's
field), or an HTTP bearer token."""


def redact(text: str) -> str:
    """`text` with every secret value replaced by REDACTED."""
    return SECRET.sub(lambda match: (match["key"] or match["scheme"]) + REDACTED, text)


class SecretRedaction(logging.Filter):
    """Blank the secrets out of a record's rendered message (and traceback) before any handler
    writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact_secrets_in_logs() -> None:
    """Put the redaction on every handler of the root logger (where every record ends)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(SecretRedaction())
