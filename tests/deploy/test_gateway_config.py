"""The gateway's one config (deploy/gateway/explain.conf.template): nginx accepts it as rendered, and its numbers
agree with the service's own limits."""

import re
import subprocess
from pathlib import Path

from deploy.stack import MAIN_CONF, find_nginx, render_gateway
from service.core.server import KEEP_ALIVE_S
from service.core.settings import Settings


def seconds(config: str, directive: str) -> float:
    value = re.search(rf"^\s*{directive}\s+(\d+)s;", config, re.MULTILINE)
    assert value, f"{directive} not set"
    return float(value.group(1))


def test_nginx_accepts_the_rendered_config(tmp_path: Path):
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "temp" / temp).mkdir(parents=True)
    rendered = render_gateway(8080, ["127.0.0.1:8081", "127.0.0.1:8082"], 10485760, 100, 200)
    (tmp_path / "explain.conf").write_text(rendered)
    (tmp_path / "nginx.conf").write_text(MAIN_CONF.format(prefix=tmp_path, user=""))
    checked = subprocess.run(
        [find_nginx(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr


def test_limits_and_timeouts_agree_with_the_service():
    settings = Settings()
    config = render_gateway(8080, ["replica:8000"], settings.max_body_bytes, 100, 200)
    assert not re.search(r"\$\{[A-Z_]+\}", config)  # every placeholder rendered
    assert f"client_max_body_size {settings.max_body_bytes};" in config
    # The replica answers its own 504 (in its body) before the gateway gives up; retries stay within one budget.
    assert seconds(config, "proxy_read_timeout") > settings.request_timeout_s
    assert seconds(config, "proxy_next_upstream_timeout") >= seconds(config, "proxy_read_timeout")
    # nginx closes idle upstream connections before the replicas do (uvicorn's keep-alive, service/core/server.py).
    assert seconds(config, "keepalive_timeout") < KEEP_ALIVE_S
    assert "least_conn;" in config and "non_idempotent" in config and "server replica:8000" in config


def jobs_location(config: str) -> str:
    return re.search(r"location /v1/jobs/ \{(.*?)\n    \}", config, re.DOTALL).group(1)


def test_job_reads_go_to_the_next_replica_on_404_only_while_jobs_live_in_each_replica():
    memory = jobs_location(render_gateway(8080, ["replica:8000"], 10485760, 100, 200, jobs="memory"))
    assert "proxy_next_upstream error timeout http_503 http_404;" in memory
    shared = jobs_location(render_gateway(8080, ["replica:8000"], 10485760, 100, 200, jobs="redis"))
    assert "proxy_next_upstream error timeout http_503;" in shared
