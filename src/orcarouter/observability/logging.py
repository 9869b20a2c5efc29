"""Logging with one redaction filter on every handler: no secret reaches a log line.

It masks anything shaped like an API key (``sk-…``, bearer tokens, ``x-api-key`` values)
and every configured secret verbatim, in the message, its arguments and exception text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

# A credential after its header name: RFC 6750 tokens may hold ~ + / and trailing =; requiring
# a digit keeps ordinary words ("bearer authentication") readable.
_KEY_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]{8,}"
    r"|((?:bearer|x-api-key|x-goog-api-key|api-key)[\"']?\s*[:=]?\s*[\"']?)"
    r"(?=[A-Za-z0-9_\-.~+/]*[0-9])[A-Za-z0-9_\-.~+/]{12,}=*",
    re.IGNORECASE,
)


class Redactor:
    """Masks key-shaped strings and the configured secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by a short recognisable mask."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, secret[:4] + "…[redacted]")
        return _KEY_SHAPES.sub(lambda m: (m.group(1) or m.group(2) or "") + "…[redacted]", text)


class RedactingFilter(logging.Filter):
    """Renders each record's message once, redacted, and drops the raw arguments."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; never drops a record."""
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = self._redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(secrets: Iterable[str], level: str = "INFO") -> None:
    """One stderr handler with the redaction filter, for the gateway and its libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp", "alembic"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
