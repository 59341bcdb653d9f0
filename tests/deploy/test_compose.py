"""docker-compose.yml: valid against the Compose specification's schema (check-jsonschema's vendored copy), and
the deployment's rules: only the gateway published, health checks gating it, a stop grace above the drain,
the gpu and monitoring profiles, and a dashboard that asks for metrics the service really exports."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.stack import JOBS_NEXT_UPSTREAM, PLACEHOLDERS
from service.core.settings import Settings
from tests.tiny_models import tiny_loaded

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
DASHBOARD = ROOT / "deploy/monitoring/grafana/dashboards/explain.json"


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def seconds(duration: str) -> float:
    return float(re.fullmatch(r"(\d+)s", duration).group(1))


def test_the_compose_file_is_valid_against_the_compose_specification(tmp_path: Path):
    checked = validate(COMPOSE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "docker-compose.yml"  # the validator is real: a wrong file fails
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period: 35s", "stop_grace_period: [35]", 1))
    assert validate(broken).returncode != 0


def test_only_the_gateway_is_published_and_the_replicas_health_gates_it(compose: dict):
    services = compose["services"]
    published = {name for name, s in services.items() if s.get("ports") and not s.get("profiles")}
    assert published == {"gateway"}
    assert all(p.startswith("127.0.0.1:") for p in services["grafana"]["ports"])  # monitoring: local only
    assert services["gateway"]["depends_on"]["explain"]["condition"] == "service_healthy"
    assert services["gateway"]["depends_on"]["explain-gpu"] == {"condition": "service_healthy", "required": False}
    template = services["gateway"]["volumes"][0].split(":")[0]
    assert (ROOT / template).resolve() == ROOT / "deploy/gateway/explain.conf.template"  # the one gateway config
    environment = services["gateway"]["environment"]
    assert "server explain:8000" in environment["GATEWAY_UPSTREAM_SERVERS"]
    # the image's entrypoint renders exactly the template's placeholders (envsubst, filtered by this pattern)
    assert set(PLACEHOLDERS) <= set(environment)
    assert all(re.match(environment["NGINX_ENVSUBST_FILTER"], name) for name in PLACEHOLDERS)


def test_replicas_drain_before_they_are_killed_and_restart_after_a_crash(compose: dict):
    grace_s = Settings().shutdown_grace_s
    for name in ("explain", "explain-gpu"):
        replica = compose["services"][name]
        assert seconds(replica["stop_grace_period"]) > grace_s + 1
        assert replica["restart"] == "unless-stopped"
        assert replica["healthcheck"]["test"] == ["CMD", "python3", "/opt/explain/healthcheck.py"]
        assert "explain" in replica["networks"]["backend"]["aliases"]
        assert "ports" not in replica
    gateway = compose["services"]["gateway"]
    assert gateway["stop_signal"] == "SIGQUIT" and seconds(gateway["stop_grace_period"]) > 60  # proxy_read_timeout


def test_the_gpu_profile_reserves_nvidia_devices_and_monitoring_scrapes_every_replica(compose: dict):
    gpu = compose["services"]["explain-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["VARIANT"] == "cuda"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert compose["services"]["explain"]["build"]["args"]["VARIANT"] == "cpu"
    for name in ("prometheus", "grafana"):
        assert compose["services"][name]["profiles"] == ["monitoring"]
        for volume in compose["services"][name]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume
    prometheus = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["dns_sd_configs"] == [{"names": ["explain"], "type": "A", "port": 8000, "refresh_interval": "15s"}]


@pytest.mark.anyio
async def test_the_dashboard_asks_only_for_metrics_the_service_exports(serve, noise_png):
    async with serve({"tiny": tiny_loaded()}) as client:
        answer = await client.post(
            "/v1/models/tiny/explain",
            params={"method": "cam"},
            content=noise_png,
            headers={"content-type": "image/png"},
        )
        assert answer.status_code == 200
        exported = set(re.findall(r"^([a-z_]+)[{ ]", (await client.get("/metrics")).text, re.MULTILINE))
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    assert all(word in titles for word in ("status", "latency", "batch size", "queue depth"))
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for e in expressions for name in re.findall(r"\b(explain_[a-z_]+)", e)}
    assert asked and asked <= exported, asked - exported
    assert any("histogram_quantile(0.99" in e and "explain_http_request_duration_seconds" in e for e in expressions)


def test_the_deployment_is_closed_by_default(compose: dict):
    """Keys required, the gateway on this machine's loopback unless the operator says otherwise, no privileges."""
    services = compose["services"]
    for name in ("explain", "explain-gpu"):
        replica = services[name]
        keys = replica["environment"]["EXPLAIN_API_KEYS"]
        assert re.fullmatch(r"\$\{EXPLAIN_API_KEYS:\?[^}]+\}", keys), keys  # compose refuses to start without keys
    for name in ("explain", "explain-gpu", "gateway"):
        service = services[name]
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
        assert service["read_only"] is True
    gateway = services["gateway"]
    assert "unprivileged" in gateway["image"]
    [published] = gateway["ports"]
    assert published.startswith("127.0.0.1:"), published
    assert services["prometheus"]["secrets"] == ["explain_metrics_key"]
    assert compose["secrets"]["explain_metrics_key"] == {"environment": "EXPLAIN_METRICS_KEY"}
    scrape = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["authorization"]["credentials_file"] == "/run/secrets/explain_metrics_key"


def test_dclint_finds_no_error(tmp_path: Path):
    """dclint (npm, installed into .tools/ by `make test`) accepts the file with no error, and is real: the same
    file with the gateway published on every interface is an error."""
    dclint = ROOT / ".tools/node_modules/.bin/dclint"
    assert dclint.exists(), "dclint is missing: `make npm-tools` installs it"
    clean = subprocess.run([dclint, COMPOSE], capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    exposed = tmp_path / "docker-compose.yml"
    exposed.write_text(
        COMPOSE.read_text().replace('"127.0.0.1:${GATEWAY_PORT:-8080}:8080"', '"${GATEWAY_PORT:-8080}:8080"')
    )
    refused = subprocess.run([dclint, exposed], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "no-unbound-port-interfaces" in refused.stdout


def test_jobs_live_in_a_healthy_unpublished_redis_with_its_data_on_a_volume(compose: dict):
    services = compose["services"]
    redis = services["redis"]
    assert "ports" not in redis and redis["networks"] == ["backend"]
    assert (
        redis["cap_drop"] == ["ALL"]
        and redis["read_only"] is True
        and "no-new-privileges:true" in redis["security_opt"]
    )
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    volume = redis["volumes"][0].split(":")[0]
    assert volume in compose["volumes"] and redis["volumes"][0].endswith(":/data")
    assert redis["healthcheck"]["test"][-1] == "ping"
    for name in ("explain", "explain-gpu"):
        replica = services[name]
        assert replica["environment"]["EXPLAIN_JOB_STORE_URL"] == "redis://redis:6379/0"
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["gateway"]["environment"]["GATEWAY_JOBS_NEXT_UPSTREAM"] == JOBS_NEXT_UPSTREAM["redis"]
