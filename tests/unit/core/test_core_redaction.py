"""Log redaction: no secret reaches a log line, and ordinary text is left as it was."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from orcarouter.observability.logging import RedactingFilter, Redactor

OPENAI_KEY = "sk-proj-AbCdEf0123456789ghijKLMNopqrstuv"
ORCA_KEY = "sk-orca-9f8e7d6c5b4a39281706f5e4d3c2b1a0ZYXWVU"
ODD_SECRET = "correct horse battery staple"  # configured, not key-shaped
SHORT_SECRET = "pw1234"  # shorter than the redactor's minimum: never masked


def _tail(secret: str) -> str:
    """The part of a key that must never appear (a short recognisable prefix may stay)."""
    return secret[9:]


# --- the redactor --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [OPENAI_KEY, ORCA_KEY, "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4"])
def test_sk_keys_are_masked(key: str) -> None:
    text = Redactor()(f"calling upstream with key={key} now")
    assert _tail(key) not in text
    assert "[redacted]" in text
    assert text.startswith("calling upstream with key=sk-")
    assert text.endswith(" now")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
        "authorization=bearer abcdefghijklmnopqrstuvwxyz012345",
        "headers={'Authorization': 'Bearer abcdefghijklmnopqrstuvwxyz012345'}",
    ],
)
def test_bearer_tokens_are_masked(text: str) -> None:
    redacted = Redactor()(text)
    assert "abcdefghijklmnopqrstuvwxyz012345" not in redacted
    assert "mnopqrstuvwxyz" not in redacted
    assert "[redacted]" in redacted


def test_a_bearer_token_with_base64_characters_is_masked_entirely() -> None:
    # RFC 6750 tokens may contain '+', '/', '~' and trailing '='.
    token = "AbCdEfGhIjKlMnOp+QrStUvWxYz/0123456789~abc=="
    redacted = Redactor()(f"Authorization: Bearer {token}")
    assert "QrStUvWxYz" not in redacted
    assert "0123456789" not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "x-api-key: abcdef0123456789ghijkl",
        "X-Api-Key: abcdef0123456789ghijkl",
        "{'x-api-key': 'abcdef0123456789ghijkl'}",
        '{"x-goog-api-key": "abcdef0123456789ghijkl"}',
        "api-key=abcdef0123456789ghijkl",
    ],
)
def test_api_key_header_values_are_masked(text: str) -> None:
    redacted = Redactor()(text)
    assert "0123456789ghijkl" not in redacted
    assert "[redacted]" in redacted


def test_configured_secrets_are_masked_verbatim_even_when_not_key_shaped() -> None:
    redactor = Redactor([ODD_SECRET, "tg-3f9a2b7c"])
    redacted = redactor(f"db password is {ODD_SECRET}; together key tg-3f9a2b7c; done")
    assert ODD_SECRET not in redacted
    assert "battery staple" not in redacted
    assert "3f9a2b7c" not in redacted
    assert redacted.startswith("db password is ")
    assert redacted.endswith("; done")


def test_every_occurrence_of_a_secret_is_masked() -> None:
    redacted = Redactor([ODD_SECRET])(f"{ODD_SECRET} and again {ODD_SECRET}")
    assert redacted.count("[redacted]") == 2
    assert "battery" not in redacted


def test_a_secret_containing_another_secret_is_masked_whole() -> None:
    inner, outer = "abcdefgh", "abcdefgh-and-more-secret"
    redacted = Redactor([inner, outer])(f"value {outer} end")
    assert "and-more-secret" not in redacted
    assert "efgh" not in redacted


def test_very_short_configured_secrets_are_not_masked() -> None:
    # Masking every occurrence of a six-character string would garble ordinary text.
    assert Redactor([SHORT_SECRET])(f"pin {SHORT_SECRET}") == f"pin {SHORT_SECRET}"


@pytest.mark.parametrize(
    "text",
    [
        "request completed in 12ms: model=gpt-4o-mini status=200 tokens=1532",
        "POST /v1/chat/completions 200 OK",
        "the bearer of the request is unknown",
        "x-api-key header is missing",
        "sk-short is not a key",
        "provider openrouter/anthropic/claude-sonnet-4.6 answered in 2.5s",
        "key_3f9a0c1d2e4b5a6978cdef01 revoked by admin",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor([ODD_SECRET])(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "disk-usage-threshold-exceeded on /var",
        "task-queue-worker-started",
        "risk-assessment-pipeline finished",
    ],
)
def test_words_that_merely_contain_sk_dash_are_left_alone(text: str) -> None:
    assert Redactor()(text) == text


# --- the logging filter --------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger whose one handler redacts and writes to a string buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor([ODD_SECRET, ORCA_KEY])))
    logger = logging.getLogger("orcarouter.tests.core.redaction")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.handlers = []
    logger.propagate = True


def test_a_secret_in_the_message_arguments_is_masked(
    log_output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_output
    logger.info("upstream %s rejected key %s (%d)", "openai", OPENAI_KEY, 401)
    logger.warning("config: password=%r", ODD_SECRET)
    output = stream.getvalue()
    assert _tail(OPENAI_KEY) not in output
    assert "battery staple" not in output
    assert "upstream openai rejected key sk-" in output
    assert "(401)" in output


def test_a_secret_in_a_dict_argument_is_masked(
    log_output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_output
    headers = {"authorization": f"Bearer {ORCA_KEY}", "x-api-key": "abcdef0123456789ghijkl"}
    logger.debug("outbound headers: %s", headers)
    output = stream.getvalue()
    assert _tail(ORCA_KEY) not in output
    assert "0123456789ghijkl" not in output
    assert "outbound headers:" in output


def test_a_secret_in_exception_text_is_masked(
    log_output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_output
    try:
        try:
            raise KeyError(ODD_SECRET)
        except KeyError as inner:
            raise RuntimeError(f"auth failed for {OPENAI_KEY}") from inner
    except RuntimeError:
        logger.exception("request failed")
    output = stream.getvalue()
    assert "request failed" in output
    assert "Traceback" in output
    assert "RuntimeError: auth failed for sk-" in output
    assert _tail(OPENAI_KEY) not in output
    assert "battery staple" not in output


def test_a_record_is_never_dropped_and_args_are_consumed(
    log_output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_output
    logger.info("plain %s and %%", "text")
    logger.info("no args at all: 100%")
    assert stream.getvalue().splitlines() == [
        "INFO orcarouter.tests.core.redaction plain text and %",
        "INFO orcarouter.tests.core.redaction no args at all: 100%",
    ]


def test_the_filter_also_covers_records_from_child_loggers(
    log_output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log_output
    child = logger.getChild("transport")
    child.error("upstream said: invalid x-api-key: %s", "abcdef0123456789ghijkl")
    output = stream.getvalue()
    assert "redaction.transport" in output
    assert "0123456789ghijkl" not in output
