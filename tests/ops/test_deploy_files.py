"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/kubernetes,
deploy/basind.service, deploy/basin.toml) parsed and checked against basind:
ports, paths and environment names that basind's flags define, grace periods
longer than its drain, and config files that basind accepts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Iterator, List

import pytest
import yaml

from conftest import BASIND, ROOT, Broker

DEPLOY = os.path.join(ROOT, "deploy")


def read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def flag_envs() -> Dict[str, str]:
    """BASIN_X -> default, from basind's own reference."""
    reference = subprocess.run([BASIND, "--config-reference"], capture_output=True, text=True,
                               check=True).stdout
    return {env: default for env, default in
            re.findall(r"^\| `--[a-z-]+` \| `(BASIN_[A-Z_]+)` \| `?([^|`]*)`? \|", reference, re.M)}


def port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def seconds(duration: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", duration)
    assert m, duration
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m[2]]


GRACE = seconds(flag_envs()["BASIN_SHUTDOWN_GRACE"])
BASINCTL_HEALTH_DEADLINE = 5.0  # Client::healthy's default timeout (client/include/basin/client.h)


@pytest.fixture(scope="module")
def dockerfile_env() -> Dict[str, str]:
    env: Dict[str, str] = {}
    # An instruction continued with a backslash is one line.
    for line in read("Dockerfile").replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            env.update(dict(kv.split("=", 1) for kv in line[4:].split()))
    return env


def test_the_dockerfile_agrees_with_basind(dockerfile_env: Dict[str, str]) -> None:
    text = read("Dockerfile")
    known = flag_envs()
    for name in dockerfile_env:
        assert name in known, f"Dockerfile sets {name}, which no flag reads"
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE ")
               for p in line.split()[1:]}
    assert exposed == {port(dockerfile_env["BASIN_LISTEN"]), port(dockerfile_env["BASIN_HTTP_LISTEN"])}
    assert f"VOLUME {dockerfile_env['BASIN_DATA_DIR']}" in text
    assert "USER 10001:10001" in text
    assert "groupadd --system --gid 10001" in text and "--uid 10001 --gid 10001" in text
    timeout = re.search(r"HEALTHCHECK .*--timeout=(\d+)s", text)
    assert timeout and float(timeout[1]) > BASINCTL_HEALTH_DEADLINE
    assert "COPY bench" not in text and "COPY tests" not in text
    assert "runtime-packages.sh" in text  # the runtime packages come from ldd


@pytest.fixture(scope="module")
def compose() -> Dict[str, Any]:
    return yaml.safe_load(read("deploy", "compose.yaml"))


def test_compose_agrees_with_the_image_and_basind(compose: Dict[str, Any],
                                                  dockerfile_env: Dict[str, str]) -> None:
    broker = compose["services"]["basind"]
    targets = {int(p.rsplit(":", 1)[1]) for p in broker["ports"]}
    assert targets == {port(dockerfile_env["BASIN_LISTEN"]),
                       port(dockerfile_env["BASIN_HTTP_LISTEN"])}
    mounts = {v.split(":")[1] for v in broker["volumes"]}
    assert dockerfile_env["BASIN_DATA_DIR"] in mounts
    for name in broker.get("environment", {}):
        assert name in flag_envs(), name
    assert seconds(broker["stop_grace_period"]) > GRACE
    assert "health" in broker["healthcheck"]["test"]
    assert seconds(broker["healthcheck"]["timeout"]) > BASINCTL_HEALTH_DEADLINE
    config = broker["command"][broker["command"].index("--config") + 1]
    assert any(v.endswith(":" + config + ":ro") for v in broker["volumes"])
    for client in ("producer", "consumer"):
        service = compose["services"][client]
        assert service["depends_on"]["basind"]["condition"] == "service_healthy"
        assert "basind:" + str(port(dockerfile_env["BASIN_LISTEN"])) in service["command"][0]


@pytest.fixture(scope="module")
def kubernetes() -> Dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(read("deploy", "kubernetes", "basin.yaml")) if d]
    return {d["kind"]: d for d in docs}


def test_kubernetes_agrees_with_basind(kubernetes: Dict[str, Any]) -> None:
    assert set(kubernetes) == {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}
    sts = kubernetes["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    for name in env:
        assert name in flag_envs(), name
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": port(env["BASIN_LISTEN"]), "http": port(env["BASIN_HTTP_LISTEN"])}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == env["BASIN_DATA_DIR"]
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    config_path = container["args"][container["args"].index("--config") + 1]
    assert os.path.dirname(config_path) == mounts["config"]
    config = kubernetes["ConfigMap"]["data"][os.path.basename(config_path)]
    grace = re.search(r'shutdown-grace = "([^"]+)"', config)
    assert pod["terminationGracePeriodSeconds"] > seconds(grace[1] if grace else "10s")
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["fsGroup"] == 10001
    assert container["resources"]["limits"]["memory"]
    service = kubernetes["Service"]
    assert service["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert kubernetes["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_systemd_unit_agrees_with_basind() -> None:
    unit = read("deploy", "basind.service")
    values: Dict[str, List[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    assert values["Type"] == ["notify"]
    assert values["ExecStart"][0].split()[0].endswith("/basind")
    assert seconds(values["TimeoutStopSec"][0]) > GRACE
    assert values["KillSignal"] == ["SIGTERM"]
    assert "-HUP" in values["ExecReload"][0]
    for env in values.get("Environment", []):
        assert env.split("=", 1)[0] in flag_envs(), env
    assert values["StateDirectory"] == ["basin"]
    assert any(e == "BASIN_DATA_DIR=/var/lib/basin" for e in values["Environment"])
    for hardening in ("NoNewPrivileges", "ProtectSystem", "DynamicUser", "PrivateTmp"):
        assert hardening in values, hardening
    # basind calls setrlimit at start: a filter denying @resources would kill it.
    assert not any("@resources" in f and "~" in f for f in values.get("SystemCallFilter", []))


@pytest.fixture
def data_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="basin-deploy-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("source", ["deploy/basin.toml", "the Kubernetes ConfigMap"])
def test_the_shipped_config_files_start_basind(source: str, data_dir: str,
                                               kubernetes: Dict[str, Any]) -> None:
    if source == "deploy/basin.toml":
        path = os.path.join(DEPLOY, "basin.toml")
    else:
        path = os.path.join(data_dir, "basin.toml")
        with open(path, "w") as f:
            f.write(kubernetes["ConfigMap"]["data"]["basin.toml"])
    b = Broker("--config", path, "--data-dir", os.path.join(data_dir, "data"),
               "--max-memory", "256MiB")
    try:
        import basin
        with basin.Client(b.address) as client:
            assert {"jobs", "jobs.dlq"} <= {q.name for q in client.list_queues()}
    finally:
        b.close()


def test_kubectl_accepts_the_manifests_offline() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl (Debian: kubernetes-client); the manifests were checked above")
    r = subprocess.run([kubectl, "create", "--dry-run=client", "--validate=false", "-o", "name",
                        "-f", os.path.join(DEPLOY, "kubernetes", "basin.yaml")],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "KUBECONFIG": "/dev/null"})
    if r.returncode != 0 and re.search(r"connection refused|server API group list|"
                                       r"unable to recognize|no configuration", r.stderr):
        pytest.skip(f"kubectl cannot dry-run without a cluster here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted([
        "configmap/basin-config", "service/basin", "statefulset.apps/basin",
        "poddisruptionbudget.policy/basin"])
