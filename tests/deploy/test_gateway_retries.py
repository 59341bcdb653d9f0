"""What the gateway sends again: a request whose replica took it and died is retried on another replica when it is
a plain explain (a pure function of its input), and never when it creates a job (a visualization, or an explain
with `Prefer: respond-async`), which a second replica would run a second time.

Real nginx with the one gateway config, in front of two stand-in replicas that read each request whole and then
close the connection without answering (a replica killed after accepting the work)."""

import os
import pwd
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from deploy.stack import MAIN_CONF, find_nginx, render_gateway
from tests.real_server import free_port


class DyingReplica:
    """Accepts connections, reads one request (head and Content-Length body), counts it, closes unanswered."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[str] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")), 0
                )
                while len(body) < length:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                if lines[0]:
                    self.requests.append(lines[0])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[tuple[str, list[DyingReplica]]]:
    prefix = tmp_path_factory.mktemp("gateway")
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "temp" / temp).mkdir(parents=True)
    replicas = [DyingReplica(), DyingReplica()]
    port = free_port()
    upstreams = [f"127.0.0.1:{replica.port}" for replica in replicas]
    (prefix / "explain.conf").write_text(render_gateway(port, upstreams, 10485760, 1000, 1000))
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(MAIN_CONF.format(prefix=prefix, user=user))
    nginx = subprocess.Popen([find_nginx(), "-p", str(prefix), "-c", str(prefix / "nginx.conf")])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and nginx.poll() is None, "nginx did not start"
            time.sleep(0.1)
    try:
        yield url, replicas
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def sent(gateway: tuple[str, list[DyingReplica]], path: str, headers: dict[str, str] | None = None) -> int:
    """POST through the gateway; how many replicas received the request."""
    url, replicas = gateway
    for replica in replicas:
        replica.requests.clear()
    answer = httpx.post(url + path, content=b'{"image": "AAAA"}', headers=headers or {}, timeout=30)
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "bad_gateway"
    return sum(len(replica.requests) for replica in replicas)


def test_a_plain_explain_is_sent_to_the_next_replica(gateway):
    assert sent(gateway, "/v1/models/m/explain?method=grad_cam") == 2


def test_a_post_that_creates_a_job_is_never_sent_twice(gateway):
    assert sent(gateway, "/v1/models/m/explain?method=score_cam", {"Prefer": "respond-async"}) == 1
    assert sent(gateway, "/v1/models/m/explain", {"Prefer": "wait=5, Respond-Async"}) == 1
    assert sent(gateway, "/v1/models/m/visualizations") == 1


def test_the_job_route_keeps_its_path_and_query(gateway):
    url, replicas = gateway
    sent(gateway, "/v1/models/m/explain?method=score_cam&top_k=2", {"Prefer": "respond-async"})
    [line] = [line for replica in replicas for line in replica.requests]
    assert line == "POST /v1/models/m/explain?method=score_cam&top_k=2 HTTP/1.1"
