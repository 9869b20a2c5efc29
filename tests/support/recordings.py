"""The recorded provider exchanges in ``tests/fixtures/recordings`` as plain objects."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "recordings"


@dataclass(frozen=True)
class Interaction:
    """One recorded request and the response the provider sent to it."""

    file: str
    index: int
    method: str
    uri: str
    request_headers: dict[str, list[str]]
    request_body: Any
    status: int
    response_headers: dict[str, list[str]]
    response_json: Any | None
    response_text: str | None

    @property
    def id(self) -> str:
        """A readable test id."""
        return f"{Path(self.file).stem}#{self.index}"

    @property
    def is_stream(self) -> bool:
        """True when the recorded response is a Server-Sent Events stream."""
        return self.response_text is not None and "data:" in self.response_text

    def request_header(self, name: str) -> str | None:
        """A recorded request header, if present."""
        values = self.request_headers.get(name)
        return values[0] if values else None


@cache
def load_family(family: str) -> tuple[Interaction, ...]:
    """Every interaction recorded for an upstream API family, in file order."""
    out: list[Interaction] = []
    for path in sorted((ROOT / family).glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=yaml.CSafeLoader)
        for index, item in enumerate(data["interactions"]):
            request, response = item["request"], item["response"]
            body = response.get("body")
            out.append(
                Interaction(
                    file=f"{family}/{path.name}",
                    index=index,
                    method=request["method"],
                    uri=request["uri"],
                    request_headers=request.get("headers") or {},
                    request_body=request.get("parsed_body", request.get("body")),
                    status=response["status"]["code"],
                    response_headers=response.get("headers") or {},
                    response_json=response.get("parsed_body"),
                    response_text=body.get("string") if isinstance(body, dict) else None,
                )
            )
    return tuple(out)
