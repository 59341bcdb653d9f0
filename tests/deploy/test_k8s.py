"""deploy/k8s: every overlay renders with kustomize (`kubectl kustomize`) and validates offline against the
Kubernetes schemas (kubernetes-validate, strict); probes, grace periods, limits and the gateway's config agree
with the service."""

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.stack import JOBS_NEXT_UPSTREAM, PLACEHOLDERS
from service.core.settings import Settings
from service.http.app import create_app

ROOT = Path(__file__).parents[2]
OVERLAYS = ("cpu", "gpu", "cpu-redis")
KUBERNETES_VERSION = "1.33.0"
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # CRDs: no schema in the Kubernetes set


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its kustomize) is needed: it is in TEST_SYSTEM_PACKAGES"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def manifests(request) -> tuple[str, dict[tuple[str, str], dict]]:
    docs = render(request.param)
    return request.param, {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def container(manifests: dict, deployment: str) -> dict:
    (only,) = manifests[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"]
    return only


def test_every_resource_validates_against_the_kubernetes_schemas(manifests):
    _, resources = manifests
    kinds = {kind for kind, _ in resources}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
        "ConfigMap",
        "ServiceMonitor",
    } <= kinds
    for (kind, name), doc in resources.items():
        if (doc["apiVersion"], kind) in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"].get("namespace", "explain") == "explain", (kind, name)


def test_the_validator_is_real():
    (deployment,) = [d for d in render("cpu") if d["kind"] == "Deployment" and d["metadata"]["name"] == "explain"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = [8000]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "http"
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}  # a typo: strict refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_probes_use_routes_that_exist_and_the_grace_outlasts_the_drain(manifests):
    _, resources = manifests
    routes = set(create_app(Settings(models=["tiny"])).openapi()["paths"])
    replica = container(resources, "explain")
    assert replica["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert replica["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert replica["startupProbe"]["httpGet"]["path"] == "/healthz"
    pod = resources[("Deployment", "explain")]["spec"]["template"]["spec"]
    pause_s = int(replica["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain_s = float(next(e["value"] for e in replica["env"] if e["name"] == "EXPLAIN_SHUTDOWN_GRACE_S"))
    assert drain_s == Settings().shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] > pause_s + drain_s + 1
    assert pod["securityContext"]["runAsNonRoot"] and replica["securityContext"]["readOnlyRootFilesystem"]
    assert replica["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_gpu_overlay_reserves_a_gpu_and_the_cpu_overlay_none(manifests):
    overlay, resources = manifests
    limits = container(resources, "explain")["resources"]["limits"]
    image = container(resources, "explain")["image"]
    if overlay == "gpu":
        assert limits["nvidia.com/gpu"] == "1" and image.endswith(":cuda")
    else:
        assert "nvidia.com/gpu" not in limits and image.endswith(":cpu")


def test_autoscaling_disruption_and_monitoring_point_at_the_replicas(manifests):
    _, resources = manifests
    hpa = resources[("HorizontalPodAutoscaler", "explain")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "explain"
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "explain_queue_depth"
    pdb = resources[("PodDisruptionBudget", "explain")]["spec"]
    replica_labels = resources[("Deployment", "explain")]["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= replica_labels.items()
    monitor = resources[("ServiceMonitor", "explain")]["spec"]
    service = resources[("Service", "explain")]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert resources[("Service", "explain-replicas")]["spec"]["clusterIP"] == "None"  # the gateway sees each pod


def test_the_gateway_runs_the_one_gateway_config_and_the_ingress_its_limits(manifests):
    _, resources = manifests
    (config,) = [doc for (kind, name), doc in resources.items() if name.startswith("explain-gateway-template")]
    template = (ROOT / "deploy/gateway/explain.conf.template").read_text()
    assert config["data"]["explain.conf.template"] == template
    gateway = container(resources, "explain-gateway")
    env = {e["name"]: e["value"] for e in gateway["env"]}
    assert set(PLACEHOLDERS) <= set(env)
    assert "explain-replicas.explain.svc.cluster.local:8000 resolve" in env["GATEWAY_UPSTREAM_SERVERS"]
    settings = Settings()
    assert int(env["EXPLAIN_MAX_BODY_BYTES"]) == settings.max_body_bytes
    annotations = resources[("Ingress", "explain")]["metadata"]["annotations"]
    body = re.fullmatch(r"(\d+)m", annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    assert int(body.group(1)) * 1024 * 1024 == settings.max_body_bytes
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > settings.request_timeout_s
    # clients are rate-limited where their addresses are known; the gateway's limit is above the Ingress's
    assert int(env["GATEWAY_RATE_PER_S"]) > int(annotations["nginx.ingress.kubernetes.io/limit-rps"])


def test_the_replicas_are_closed_by_default(manifests):
    """Keys from a Secret, TLS at the Ingress, only the gateway and Prometheus reach the replicas, no API token."""
    _, resources = manifests
    replica = container(resources, "explain")
    keys = next(env for env in replica["env"] if env["name"] == "EXPLAIN_API_KEYS")
    assert keys["valueFrom"]["secretKeyRef"] == {"name": "explain-api-keys", "key": "api-keys"}
    for name in ("explain", "explain-gateway"):
        assert resources[("Deployment", name)]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False

    ingress = resources[("Ingress", "explain")]
    hosts = {host for rule in ingress["spec"]["rules"] for host in [rule["host"]]}
    assert hosts <= {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"

    policy = resources[("NetworkPolicy", "explain-replicas")]["spec"]
    replica_labels = resources[("Deployment", "explain")]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= replica_labels.items() and policy["policyTypes"] == [
        "Ingress"
    ]
    [rule] = policy["ingress"]
    gateway_labels = resources[("Deployment", "explain-gateway")]["spec"]["template"]["metadata"]["labels"]
    sources = rule["from"]
    assert sources[0] == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "explain-gateway"}}}
    assert sources[0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert sources[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert len(sources) == 2 and rule["ports"] == [{"port": "http", "protocol": "TCP"}]

    monitor = resources[("ServiceMonitor", "explain")]["spec"]["endpoints"][0]
    assert monitor["authorization"]["credentials"] == {"name": "explain-api-keys", "key": "metrics-key"}


def test_jobs_are_in_redis_only_where_the_overlay_says_and_only_the_replicas_reach_it(manifests):
    overlay, resources = manifests
    replica_env = {e["name"]: e for e in container(resources, "explain")["env"]}
    gateway_env = {e["name"]: e.get("value") for e in container(resources, "explain-gateway")["env"]}
    if overlay != "cpu-redis":
        assert "EXPLAIN_JOB_STORE_URL" not in replica_env and ("StatefulSet", "explain-redis") not in resources
        assert gateway_env["GATEWAY_JOBS_NEXT_UPSTREAM"] == JOBS_NEXT_UPSTREAM["memory"]
        return
    assert replica_env["EXPLAIN_JOB_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "explain-job-store",
        "key": "url",
    }
    assert ("Secret", "explain-job-store") in resources
    assert gateway_env["GATEWAY_JOBS_NEXT_UPSTREAM"] == JOBS_NEXT_UPSTREAM["redis"]
    redis = resources[("StatefulSet", "explain-redis")]["spec"]
    pod = redis["template"]["spec"]
    (server,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and server["securityContext"]["readOnlyRootFilesystem"]
    assert "--appendonly" in server["args"] and server["volumeMounts"][0]["mountPath"] == "/data"
    assert redis["volumeClaimTemplates"][0]["metadata"]["name"] == server["volumeMounts"][0]["name"]
    policy = resources[("NetworkPolicy", "explain-redis")]["spec"]
    assert policy["podSelector"]["matchLabels"] == redis["template"]["metadata"]["labels"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "explain"}}}]
    service = resources[("Service", "explain-redis")]["spec"]
    assert service["selector"] == redis["template"]["metadata"]["labels"]
