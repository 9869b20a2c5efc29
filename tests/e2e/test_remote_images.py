"""Remote image URLs: passed on to targets that fetch them, fetched through the egress guard
(and sent inline) for Gemini, refused when they point at a private address."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from aiohttp import web

from tests.conftest import ADMIN_KEY, GEMINI_UPSTREAM_KEY, replay_config
from tests.support.gateway import GatewayProcess
from tests.support.replay import Handler, Received, ReplayUpstream, json_answer

GEMINI_ANSWER = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "a red square"}]}, "finishReason": "STOP"}
    ],
    "usageMetadata": {"promptTokenCount": 260, "candidatesTokenCount": 4, "totalTokenCount": 264},
    "modelVersion": "gemini-2.5-flash",
}


def _png() -> bytes:
    """A real 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = _png()


def _image() -> Handler:
    async def handler(request: web.Request, seen: Received) -> web.StreamResponse:
        return web.Response(body=PNG, content_type="image/png")

    return handler


def _ask(gateway: GatewayProcess, model: str, url: str) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    with client:
        return client.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        )


@pytest.fixture(scope="module")
def trusting_gateway(
    upstream: ReplayUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway whose operator lets client URLs reach 127.0.0.1 (where the test images are)."""
    config = {**replay_config(upstream), "egress": {"allow_private": True}}
    workdir: Path = tmp_path_factory.mktemp("egress")
    process = GatewayProcess(
        workdir,
        config,
        env={
            "ORCAROUTER_ADMIN_KEY": ADMIN_KEY,
            "REPLAY_OPENAI_KEY": "sk-openai",
            "REPLAY_ANTHROPIC_KEY": "sk-ant",
            "REPLAY_GEMINI_KEY": GEMINI_UPSTREAM_KEY,
        },
    )
    process.start()
    yield process
    process.stop()


def test_gemini_gets_a_remote_image_inline(
    trusting_gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(_image())
    upstream.expect(json_answer(GEMINI_ANSWER))
    url = upstream.base_url + "/images/red.png"
    completion = _ask(trusting_gateway, "replay-gemini/gemini-2.5-flash", url)
    assert completion.choices[0].message.content == "a red square"
    fetched, generated = upstream.received[-2:]
    assert fetched.path == "/images/red.png"
    assert "x-goog-api-key" not in {k.lower() for k in fetched.headers}  # no credential leaks
    parts = generated.body["contents"][0]["parts"]
    inline = next(p["inlineData"] for p in parts if "inlineData" in p)
    assert inline["mimeType"] == "image/png"
    assert base64.b64decode(inline["data"]) == PNG


def test_anthropic_gets_the_url_itself(
    trusting_gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "red"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 1},
    }
    upstream.expect(json_answer(answer))
    url = "https://images.example/red.png"
    _ask(trusting_gateway, "replay-anthropic/claude-sonnet-4-5", url)
    (seen,) = upstream.received  # nothing fetched by the gateway
    image = seen.body["messages"][0]["content"][1]
    assert image == {"type": "image", "source": {"type": "url", "url": url}}


def test_a_private_image_url_is_refused_by_default(
    gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    upstream.expect(_image())
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(gateway, "replay-gemini/gemini-2.5-flash", upstream.base_url + "/images/red.png")
    assert caught.value.code == "image_fetch_failed"
    assert "127.0.0.1" in caught.value.message
    assert upstream.received == []  # neither the image host nor Gemini was contacted


def test_more_image_urls_than_allowed_is_a_client_error(
    trusting_gateway: GatewayProcess, upstream: ReplayUpstream
) -> None:
    """Over ``egress.max_images_per_request`` (20) URLs to fetch: 400 in the client's envelope,
    before any image is fetched or any upstream asked."""
    url = upstream.base_url + "/images/red.png"
    content: list[openai.types.chat.ChatCompletionContentPartParam] = [
        {"type": "image_url", "image_url": {"url": f"{url}?n={n}"}} for n in range(21)
    ]
    client = openai.OpenAI(
        base_url=trusting_gateway.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0
    )
    with client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="replay-gemini/gemini-2.5-flash",
            messages=[{"role": "user", "content": content}],
        )
    assert "at most 20 images by URL" in caught.value.message
    assert caught.value.param == "messages"
    assert upstream.received == []
