"""Pure translation between each wire format and the canonical conversation.

``openai_chat`` and ``anthropic_messages`` each offer ``request_to_canonical``,
``request_from_canonical``, ``response_to_canonical``, ``response_from_canonical`` and a stream
decoder/encoder pair (small state machines fed one event at a time).
"""

from orcarouter.translate.common import RequestTranslation, TranslationError

__all__ = ["RequestTranslation", "TranslationError"]
