"""A job's Server-Sent Events, as both stores send them: `event: progress` with the job's status (JSON, without
the result) at each change, then one event named after the final status with the whole job, result included; a
comment line every `KEEP_ALIVE_S` keeps idle connections open."""

KEEP_ALIVE_S = 15.0
KEEP_ALIVE = b": keep-alive\n\n"


def sse_event(name: str, event_id: str, data: bytes) -> bytes:
    return b"event: %s\nid: %s\ndata: %s\n\n" % (name.encode(), event_id.encode(), data)
