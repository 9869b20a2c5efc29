"""Provenance of thinking signatures across wires.

A signature (Anthropic ``thinking.signature`` / ``redacted_thinking.data``, Gemini
``thoughtSignature``) is an opaque token that only the vendor that issued it accepts: Anthropic
answers 400 to a thinking block it did not sign
(https://platform.claude.com/docs/en/build-with-claude/extended-thinking), Gemini validates its
own (https://ai.google.dev/gemini-api/docs/thought-signatures). A canonical ``Thinking`` /
``RedactedThinking`` names its issuer in ``format``, and each renderer sends a signature only
to that issuer (``keeps_thinking`` for Anthropic, ``gemini_signed`` for Gemini).

The format must survive the client's round trip. OpenAI ``reasoning_details`` entries carry it
in their ``format`` field. Anthropic and Gemini blocks have nothing but the signature string,
so a signature another vendor issued is shown to their clients wrapped as
``orcarouter:{format}:{signature}`` (``:`` never occurs in base64, so no vendor's own
signature looks like that). The client replays it as it is; parsing unwraps it and the block
regains its issuer, so it returns byte-exact to that vendor and is dropped for the others. A
signature the wire's own vendor issued is shown unchanged.
"""

from __future__ import annotations

from typing import Final

FOREIGN_SIGNATURE_PREFIX: Final = "orcarouter:"
"""Marks a signature shown to a client of a wire whose vendor did not issue it."""


def wrap_signature(signature: str, fmt: str | None) -> str:
    """Another vendor's signature, tagged with its issuer (``fmt``, may be unknown)."""
    return f"{FOREIGN_SIGNATURE_PREFIX}{fmt or ''}:{signature}"


def unwrap_signature(value: str, native: str) -> tuple[str, str | None]:
    """``(signature, issuer)`` of a signature a client of the ``native`` wire sent back.

    A wrapped value gives its tagged issuer (``None`` when unknown); any other value is the
    native vendor's own.
    """
    if value.startswith(FOREIGN_SIGNATURE_PREFIX):
        fmt, _, signature = value[len(FOREIGN_SIGNATURE_PREFIX) :].partition(":")
        return signature, fmt or None
    return value, native


def client_signature(signature: str, fmt: str | None, native: str) -> str:
    """A signature as a client of the ``native`` wire is shown it (empty stays empty)."""
    if not signature or fmt == native:
        return signature
    return wrap_signature(signature, fmt)
