"""Gemini ``generationConfig`` ⇄ canonical sampling, limits, output format and reasoning.

``thinkingConfig`` takes ``thinkingBudget`` (2.5 models; 0 = off, -1 = dynamic) or
``thinkingLevel`` (Gemini 3), never both: https://ai.google.dev/gemini-api/docs/thinking
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from orcarouter.canonical import Reasoning, Request, ResponseFormat, Sampling
from orcarouter.translate.common import (
    JsonDict,
    Policy,
    TranslationError,
    as_bool,
    as_integer,
    as_number,
    as_strings,
    optional_int,
)
from orcarouter.translate.gemini.fields import get
from orcarouter.translate.gemini.schema import sanitize_schema, schema_to_json
from orcarouter.translate.reasoning import EFFORT_TO_BUDGET, effort_for_budget

ThinkingStyle: TypeAlias = Literal["budget", "level"]

# 512 is the smallest budget every 2.5 model takes (Flash-Lite: 0 or 512-24576; Pro: 128 or more).
GEMINI_EFFORT_TO_BUDGET: Final = {**EFFORT_TO_BUDGET, "minimal": 512}
_LEVELS: Final = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
MAX_STOP_SEQUENCES: Final = 5
"""Gemini takes at most five stop sequences (https://ai.google.dev/api/generate-content)."""
JSON_MIME: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Generation:
    """The canonical pieces a ``generationConfig`` holds."""

    sampling: Sampling
    reasoning: Reasoning | None
    response_format: ResponseFormat | None
    max_output_tokens: int | None


def generation_to_canonical(config: Mapping[str, Any]) -> Generation:
    """Parse a ``generationConfig`` (unknown keys are kept by the caller's residual)."""
    return Generation(
        sampling=Sampling(
            temperature=as_number(get(config, "temperature"), "temperature"),
            top_p=as_number(get(config, "topP"), "topP"),
            top_k=as_integer(get(config, "topK"), "topK"),
            stop=as_strings(get(config, "stopSequences"), "stopSequences"),
            presence_penalty=as_number(get(config, "presencePenalty"), "presencePenalty"),
            frequency_penalty=as_number(get(config, "frequencyPenalty"), "frequencyPenalty"),
            seed=as_integer(get(config, "seed"), "seed"),
            n=as_integer(get(config, "candidateCount"), "candidateCount"),
            logprobs=as_bool(get(config, "responseLogprobs"), "responseLogprobs"),
            top_logprobs=as_integer(get(config, "logprobs"), "logprobs"),
        ),
        reasoning=_reasoning(get(config, "thinkingConfig")),
        response_format=_response_format(config),
        max_output_tokens=optional_int(get(config, "maxOutputTokens")),
    )


def _reasoning(thinking: Any) -> Reasoning | None:
    if not isinstance(thinking, Mapping):
        return None
    budget = optional_int(get(thinking, "thinkingBudget"))
    level = get(thinking, "thinkingLevel")
    include = get(thinking, "includeThoughts")
    effort = level.lower() if isinstance(level, str) else None
    mode: Any = None
    if budget == 0:
        effort = effort or "none"
    elif budget == -1:
        mode, budget = "adaptive", None
    display = None if not isinstance(include, bool) else "summarized" if include else "omitted"
    return Reasoning(effort=effort, budget_tokens=budget, mode=mode, display=display)


def _response_format(config: Mapping[str, Any]) -> ResponseFormat | None:
    json_schema = get(config, "responseJsonSchema")
    if isinstance(json_schema, Mapping):
        return ResponseFormat(type="json_schema", schema=json_schema)
    schema = get(config, "responseSchema")
    if isinstance(schema, Mapping):
        return ResponseFormat(type="json_schema", schema=schema_to_json(schema))
    mime = get(config, "responseMimeType")
    if mime == JSON_MIME:
        return ResponseFormat(type="json_object")
    if mime == "text/plain":
        return ResponseFormat(type="text")
    return None


def generation_config(
    request: Request, policy: Policy, *, style: ThinkingStyle | None, json_schema: bool
) -> JsonDict:
    """Render sampling, limits, output format and thinking; ``style`` ``None`` = as parsed."""
    sampling = request.sampling
    out: JsonDict = {}
    for key, value in (
        ("temperature", sampling.temperature),
        ("topP", sampling.top_p),
        ("topK", sampling.top_k),
        ("candidateCount", sampling.n),
        ("maxOutputTokens", request.max_output_tokens),
        ("presencePenalty", sampling.presence_penalty),
        ("frequencyPenalty", sampling.frequency_penalty),
        ("seed", sampling.seed),
        ("responseLogprobs", sampling.logprobs),
        ("logprobs", sampling.top_logprobs),
    ):
        if value is not None:
            out[key] = value
    if sampling.stop is not None:
        stops = list(sampling.stop)
        if style is not None and len(stops) > MAX_STOP_SEQUENCES:
            stops = stops[:MAX_STOP_SEQUENCES]
            policy.adjusted.append("stop")
        out["stopSequences"] = stops
    if sampling.logit_bias is not None:
        policy.drop("logit_bias")
    _render_format(out, request.response_format, json_schema=json_schema)
    thinking = _render_thinking(request.reasoning, style, policy)
    if thinking is not None:
        out["thinkingConfig"] = thinking
    return out


def _render_format(out: JsonDict, fmt: ResponseFormat | None, *, json_schema: bool) -> None:
    if fmt is None:
        return
    if fmt.type == "text":
        out["responseMimeType"] = "text/plain"
        return
    out["responseMimeType"] = JSON_MIME
    if fmt.type == "json_schema" and fmt.schema is not None:
        if json_schema:
            out["responseJsonSchema"] = dict(fmt.schema)
        else:
            out["responseSchema"] = sanitize_schema(fmt.schema)


def _render_thinking(
    reasoning: Reasoning | None, style: ThinkingStyle | None, policy: Policy
) -> JsonDict | None:
    if reasoning is None:
        return None
    out = _as_parsed(reasoning) if style is None else _for_target(reasoning, style, policy)
    if out is None:
        return None
    off = reasoning.effort == "none" or reasoning.mode == "disabled"
    if reasoning.display is not None:
        out["includeThoughts"] = reasoning.display != "omitted"
    elif style is not None and not off:
        out["includeThoughts"] = True  # clients that ask for reasoning want to see it
    return out


def _as_parsed(reasoning: Reasoning) -> JsonDict:
    if reasoning.budget_tokens is not None:
        return {"thinkingBudget": reasoning.budget_tokens}
    if reasoning.mode == "adaptive":
        return {"thinkingBudget": -1}
    if reasoning.effort is not None:
        return {"thinkingLevel": reasoning.effort.upper()}
    return {}


def _for_target(reasoning: Reasoning, style: ThinkingStyle, policy: Policy) -> JsonDict | None:
    effort, budget = reasoning.effort, reasoning.budget_tokens
    if effort == "none" or reasoning.mode == "disabled":
        if style == "budget":
            return {"thinkingBudget": 0}
        # Gemini 3 cannot switch thinking off; LOW is the least every model takes (§4.7).
        policy.adjusted.append("reasoning_effort")
        return {"thinkingLevel": "LOW"}
    if style == "budget":
        if budget is not None:
            return {"thinkingBudget": budget}
        if effort is None:
            return {"thinkingBudget": -1}
        if effort not in GEMINI_EFFORT_TO_BUDGET:
            raise TranslationError(param="reasoning_effort", message=f"unknown effort {effort!r}")
        return {"thinkingBudget": GEMINI_EFFORT_TO_BUDGET[effort]}
    if effort is None and budget is None:
        return {}
    level = effort if effort is not None else effort_for_budget(budget or 0)
    if level in _LEVELS:
        return {"thinkingLevel": _LEVELS[level]}
    if level in ("xhigh", "max"):
        policy.adjusted.append("reasoning_effort")
        return {"thinkingLevel": "HIGH"}
    raise TranslationError(param="reasoning_effort", message=f"unknown effort {level!r}")
