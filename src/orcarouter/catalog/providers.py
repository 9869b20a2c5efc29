"""Well-known providers: enabled with no config file when their key is in the environment.

Vendor differences are data: a new OpenAI-compatible vendor is one more row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Protocol = Literal["openai", "anthropic", "gemini"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider the gateway knows how to reach without operator configuration."""

    id: str
    name: str
    protocol: Protocol
    base_url: str
    api_key_env: str
    catalog_id: str  # the provider's id in the shipped model catalog


WELL_KNOWN_PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        "openai", "OpenAI", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", "openai"
    ),
    ProviderSpec(
        "anthropic",
        "Anthropic",
        "anthropic",
        "https://api.anthropic.com/v1",
        "ANTHROPIC_API_KEY",
        "anthropic",
    ),
    ProviderSpec(
        "google",
        "Google Gemini",
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        "GEMINI_API_KEY",
        "google",
    ),
    ProviderSpec(
        "deepseek",
        "DeepSeek",
        "openai",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
        "deepseek",
    ),
    ProviderSpec("xai", "xAI", "openai", "https://api.x.ai/v1", "XAI_API_KEY", "xai"),
    ProviderSpec(
        "groq", "Groq", "openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY", "groq"
    ),
    ProviderSpec(
        "mistral", "Mistral", "openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", "mistral"
    ),
    ProviderSpec(
        "openrouter",
        "OpenRouter",
        "openai",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        "openrouter",
    ),
    ProviderSpec(
        "cerebras",
        "Cerebras",
        "openai",
        "https://api.cerebras.ai/v1",
        "CEREBRAS_API_KEY",
        "cerebras",
    ),
    ProviderSpec(
        "together",
        "Together AI",
        "openai",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        "togetherai",
    ),
    ProviderSpec(
        "fireworks",
        "Fireworks AI",
        "openai",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        "fireworks-ai",
    ),
    ProviderSpec(
        "moonshot",
        "Moonshot AI",
        "openai",
        "https://api.moonshot.ai/v1",
        "MOONSHOT_API_KEY",
        "moonshotai",
    ),
    ProviderSpec(
        "perplexity",
        "Perplexity",
        "openai",
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
        "perplexity",
    ),
)
