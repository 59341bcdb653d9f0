"""`make stack`: the deployment's topology on one machine without Docker, in the foreground.

    127.0.0.1:GATEWAY_PORT   nginx with deploy/gateway/explain.conf.template (the config compose and
                             Kubernetes use), as the current user, under a temporary prefix
    127.0.0.1:GATEWAY_PORT+i replica i of the service (`python -m service`), i = 1..REPLICAS, each named
                             `replica-i` in its X-Instance header
    127.0.0.1:GATEWAY_PORT+REPLICAS+1
                             with `STACK_JOBS=redis` (`--jobs redis`): `redis-server`, where the replicas keep
                             their jobs (AOF, fsync every second, under the temporary prefix); not started when
                             EXPLAIN_JOB_STORE_URL names a Redis already

Ctrl+C or SIGTERM stops everything it started: the replicas drain first (their admitted requests finish; new
ones are answered 503 and the gateway tries another replica), then nginx quits gracefully (open requests
finish). A second signal ends the replicas' drain at once. A replica that dies is reported and not restarted
(the gateway sends its traffic to the others); the stack exits when nginx or every replica is gone. Redis stops
last, after the replicas have handed back the jobs they had not finished.

`--state FILE` writes the gateway's URL and the replicas' ports and process ids as JSON once all are ready.
"""

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.core.settings import Settings  # noqa: E402  (the replicas' own limits, from the same EXPLAIN_* variables)

TEMPLATE = ROOT / "deploy/gateway/explain.conf.template"
PLACEHOLDERS = (
    "GATEWAY_PORT",
    "GATEWAY_UPSTREAM_SERVERS",
    "EXPLAIN_MAX_BODY_BYTES",
    "GATEWAY_RATE_PER_S",
    "GATEWAY_BURST",
    "GATEWAY_JOBS_NEXT_UPSTREAM",
)
JOBS_NEXT_UPSTREAM = {
    # Jobs in each replica's memory: a replica that lacks the job answers 404, and the next one is asked.
    "memory": "error timeout http_503 http_404",
    # Jobs in Redis: any replica answers for any job, so a 404 is the answer.
    "redis": "error timeout http_503",
}
READY_TIMEOUT_S = 300  # the built-in model loads and warms up on a CPU in well under this

MAIN_CONF = """# Written by deploy/stack.py: nginx as the current user, everything under {prefix}.
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    default_type application/octet-stream;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/explain.conf;
    access_log {prefix}/access.log explain;
}}
"""


def render_gateway(
    port: int, upstreams: list[str], max_body_bytes: int, rate_per_s: int, burst: int, jobs: str = "memory"
) -> str:
    """The gateway's http-level config for these replicas (`host:port` each) keeping their jobs in `jobs`
    (`memory` or `redis`), as envsubst would render it."""
    values = {
        "GATEWAY_PORT": str(port),
        "GATEWAY_UPSTREAM_SERVERS": " ".join(f"server {u} max_fails=3 fail_timeout=2s;" for u in upstreams),
        "EXPLAIN_MAX_BODY_BYTES": str(max_body_bytes),
        "GATEWAY_RATE_PER_S": str(rate_per_s),
        "GATEWAY_BURST": str(burst),
        "GATEWAY_JOBS_NEXT_UPSTREAM": JOBS_NEXT_UPSTREAM[jobs],
    }
    text = Template(TEMPLATE.read_text()).safe_substitute(values)
    left = [name for name in PLACEHOLDERS if "${" + name + "}" in text]
    if left:
        raise ValueError(f"placeholders not rendered: {left}")
    return text


def redis_server_command(binary: str, port: int, data: Path) -> list[str]:
    """`redis-server` on loopback as the deployment runs it for jobs: no snapshots, an append-only file synced
    every second, kept in `data`."""
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ]


def find_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        sys.exit("nginx is not installed: scripts/install-system-packages nginx (make stack does it)")
    return found


def wait_ready(url: str, process: subprocess.Popen, what: str, stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if stopping():
            raise RuntimeError(f"stopped while waiting for {what}")
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready in {READY_TIMEOUT_S} s")
        time.sleep(0.2)


class Stack:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.prefix = Path(tempfile.mkdtemp(prefix="explain-stack-"))
        self.replicas: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.nginx: subprocess.Popen | None = None
        self.redis: subprocess.Popen | None = None
        self.job_store_url = os.environ.get("EXPLAIN_JOB_STORE_URL")
        self.signals = 0

    def start(self) -> None:
        if self.args.jobs == "redis" and not self.job_store_url:
            self.start_redis(self.args.port + self.args.replicas + 1)
        for number in range(1, self.args.replicas + 1):
            name, port = f"replica-{number}", self.args.port + number
            env = os.environ | {"EXPLAIN_HOST": "127.0.0.1", "EXPLAIN_PORT": str(port), "EXPLAIN_INSTANCE_ID": name}
            if self.args.jobs == "redis":
                env["EXPLAIN_JOB_STORE_URL"] = self.job_store_url
            self.replicas[name] = subprocess.Popen(
                [sys.executable, "-m", self.args.module], cwd=ROOT, env=env, process_group=0
            )
            self.ports[name] = port
        for name, process in self.replicas.items():
            wait_ready(f"http://127.0.0.1:{self.ports[name]}", process, name, lambda: self.signals > 0)
        self.start_nginx()
        print(
            f"stack ready: http://127.0.0.1:{self.args.port} -> {len(self.replicas)} replicas on ports "
            f"{', '.join(str(p) for p in self.ports.values())} (nginx prefix {self.prefix})",
            flush=True,
        )
        if self.args.state:
            state = {
                "gateway": f"http://127.0.0.1:{self.args.port}",
                "nginx_pid": self.nginx.pid,
                "access_log": str(self.prefix / "access.log"),
                "replicas": {n: {"port": self.ports[n], "pid": p.pid} for n, p in self.replicas.items()},
                "redis_pid": None if self.redis is None else self.redis.pid,
            }
            Path(self.args.state).write_text(json.dumps(state))

    def start_redis(self, port: int) -> None:
        """`redis-server` on loopback for the replicas' jobs, its append-only file under the prefix."""
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed: scripts/install-system-packages redis-server (make stack does it)")
        data = self.prefix / "redis"
        data.mkdir()
        self.redis = subprocess.Popen(
            [*redis_server_command(binary, port, data), "--loglevel", "warning"],
            process_group=0,
        )
        self.job_store_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def start_nginx(self) -> None:
        for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / temp).mkdir(parents=True)
        upstreams = [f"127.0.0.1:{port}" for port in self.ports.values()]
        (self.prefix / "explain.conf").write_text(
            render_gateway(
                self.args.port,
                upstreams,
                self.settings.max_body_bytes,
                self.args.rate,
                self.args.burst,
                self.args.jobs,
            )
        )
        # nginx started by root hands its workers to `nobody`, which could not write this prefix: keep root.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
        conf = self.prefix / "nginx.conf"
        conf.write_text(MAIN_CONF.format(prefix=self.prefix, user=user))
        # Own process groups: Ctrl+C in a terminal reaches the stack alone, which then stops the others in order
        # (a SIGINT to nginx would be its fast shutdown, and a second signal to a replica would end its drain).
        self.nginx = subprocess.Popen([find_nginx(), "-p", str(self.prefix), "-c", str(conf)], process_group=0)
        wait_ready(f"http://127.0.0.1:{self.args.port}", self.nginx, "nginx", lambda: self.signals > 0)

    def on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        if self.signals > 1:  # a second signal: the replicas end their drain at once
            for process in self.replicas.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

    def watch(self) -> int:
        reported: set[str] = set()
        while not self.signals:
            if self.nginx is not None and self.nginx.poll() is not None:
                print(f"nginx exited with {self.nginx.returncode}: stopping", file=sys.stderr, flush=True)
                return 1
            for name, process in self.replicas.items():
                if process.poll() is not None and name not in reported:
                    reported.add(name)
                    print(f"{name} exited with {process.returncode}", file=sys.stderr, flush=True)
            if len(reported) == len(self.replicas):
                print("every replica is gone: stopping", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0

    def stop(self) -> int:
        """Drain the replicas, then let nginx finish what it has open; the worst exit status of the replicas."""
        for process in self.replicas.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        wait_s = self.settings.shutdown_grace_s + 10  # the drain, then the interpreter's own exit
        codes = []
        for name, process in self.replicas.items():
            try:
                codes.append(process.wait(timeout=wait_s))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in {wait_s:g} s: killed", file=sys.stderr, flush=True)
                process.kill()
                codes.append(process.wait())
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: open requests are finished
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()  # writes what its append-only file has not yet written
            self.redis.wait(timeout=15)
        shutil.rmtree(self.prefix, ignore_errors=True)
        return max((abs(code) for code in codes), default=0)


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(env("GATEWAY_PORT", "8080")), help="gateway port")
    parser.add_argument("--replicas", type=int, default=int(env("REPLICAS", "2")))
    parser.add_argument("--module", default="service", help="what each replica runs as `python -m MODULE`")
    parser.add_argument("--rate", type=int, default=int(env("GATEWAY_RATE_PER_S", "100")), help="requests/s per client")
    parser.add_argument("--burst", type=int, default=int(env("GATEWAY_BURST", "200")))
    parser.add_argument(
        "--jobs",
        choices=("memory", "redis"),
        default=env("STACK_JOBS", "memory"),
        help="where the replicas keep jobs: each in its memory, or in Redis (a redis-server started here unless "
        "EXPLAIN_JOB_STORE_URL names one)",
    )
    parser.add_argument("--state", help="write the gateway's URL and the replicas' ports and pids here as JSON")
    args = parser.parse_args()
    if args.replicas < 1 or args.rate < 1 or args.burst < 0:
        parser.error("REPLICAS and the rate must be at least 1, the burst at least 0")
    return args


def main() -> int:
    args = parse_args()
    stack = Stack(args, Settings())
    signal.signal(signal.SIGTERM, stack.on_signal)
    signal.signal(signal.SIGINT, stack.on_signal)
    code = 1
    try:
        stack.start()
        code = stack.watch()
    except RuntimeError as exc:
        print(f"stack failed: {exc}", file=sys.stderr, flush=True)
    finally:
        stopped = stack.stop()
    return code or stopped


if __name__ == "__main__":
    sys.exit(main())
