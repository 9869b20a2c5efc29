"""Protocol name -> implementation. Adding a protocol is one line here."""

from __future__ import annotations

from orcarouter.providers.anthropic import AnthropicProtocol
from orcarouter.providers.base import ProviderProtocol
from orcarouter.providers.gemini import GeminiProtocol
from orcarouter.providers.openai_compat import OpenAIProtocol


def protocols() -> dict[str, ProviderProtocol]:
    """A fresh registry of the protocols the gateway speaks to upstreams."""
    return {
        "openai": OpenAIProtocol(),
        "anthropic": AnthropicProtocol(),
        "gemini": GeminiProtocol(),
    }
