"""Server-Sent Events: a minimal parser of `text/event-stream` lines (the part of the format the service uses)."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None = None


class EventParser:
    """Feed lines one by one; `feed` returns an event when a blank line ends one. Comments (`:`) are ignored."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._reset()
                return None
            event = Event(self._event, "\n".join(self._data), self._id)
            self._reset()
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    parser = EventParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event


async def aparse_events(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    parser = EventParser()
    async for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
