"""Answering a request: the time of each stage, and the JSON body written straight to bytes."""

import time

from fastapi import Response
from pydantic import BaseModel


class StageClock:
    """Milliseconds spent in each stage of a request, for `timings_ms` and the `Server-Timing` header."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """Record the time since the previous lap as `stage`."""
        now = time.perf_counter()
        self.stages[stage] = round((now - self.last) * 1000, 3)
        self.last = now

    def total_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def header(self) -> str:
        return ", ".join(f"{stage};dur={ms}" for stage, ms in self.stages.items())


def json_response(body: BaseModel, clock: StageClock) -> Response:
    """Serialise `body` straight to bytes (pydantic-core, no intermediate dict or str) with `Server-Timing`."""
    content = type(body).__pydantic_serializer__.to_json(body, by_alias=True)
    clock.lap("serialise")
    clock.stages["total"] = clock.total_ms()
    return Response(content, media_type="application/json", headers={"Server-Timing": clock.header()})
