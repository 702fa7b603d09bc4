"""deploy/: the compose stack cannot run here (no Docker engine), so it is checked
structurally: every mounted file exists, ports and endpoints agree across the
files, and Grafana provisions exactly the shipped dashboards."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from alerts import generate as alerts_gen

from .conftest import ROOT, require_binary
from .test_collector import expand

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yaml"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = load(COMPOSE)
    return doc


def services() -> dict[str, Any]:
    return compose()["services"]  # type: ignore[no-any-return]


def _interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with every variable at its default."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)


def mounts() -> list[tuple[str, Path, str]]:
    out = []
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            host, container = volume.split(":")[:2]
            out.append((name, (DEPLOY / host).resolve(), container))
    return out


def mount_of(service: str, container_path: str) -> Path:
    for name, host, container in mounts():
        if name == service and container == container_path:
            return host
    raise AssertionError(f"{service} does not mount {container_path}")


def published(service: str) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in services()[service].get("ports", [])}


def test_every_mounted_file_exists_and_is_the_repositorys_own() -> None:
    for service, host, _ in mounts():
        assert host.exists(), f"{service} mounts missing {host}"
        assert ROOT in host.parents, f"{service} mounts {host}, outside the repository"
    assert (
        mount_of("otel-agent", "/etc/otelcol-contrib/config.yaml")
        == ROOT / "collector" / "agent.yaml"
    )
    assert mount_of("otel-gateway", "/etc/otelcol-contrib/config.yaml") == (
        ROOT / "collector" / "gateway.yaml"
    )
    assert mount_of("prometheus", "/etc/prometheus/rules") == alerts_gen.RULES_DIR


def test_the_stack_has_every_service_the_issue_asks_for() -> None:
    names = set(services())
    assert {"otel-agent", "otel-gateway", "jaeger", "prometheus", "alertmanager", "grafana",
            "worker"} <= names  # fmt: skip
    for name, svc in services().items():
        assert "image" in svc or "build" in svc, name


def test_worker_is_an_example_sending_otlp_to_the_agent() -> None:
    worker = services()["worker"]
    build = worker["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    command = [_interpolate(part) for part in worker["command"]]
    assert command[:2] == ["python", "-m"]
    assert command[2].startswith("examples."), "a worker from examples/"
    env = worker["environment"]
    endpoint = urlparse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-agent"
    agent = expand(load(ROOT / "collector" / "agent.yaml"))
    http_port = int(agent["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1])
    assert endpoint.port == http_port
    assert "OTEL_SERVICE_NAME" in env
    probe = services()["probe"]
    assert probe["command"][:2] == ["jobpulse", "probe"]
    assert urlparse(probe["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]).port == http_port


def _collector_env(service: str, config: str) -> dict[str, Any]:
    """The collector config as that compose service runs it."""
    text = (ROOT / "collector" / config).read_text(encoding="utf-8")
    env = services()[service].get("environment", {})
    text = re.sub(
        r"\$\{env:(\w+)(?::-([^}]*))?\}",
        lambda m: str(env.get(m.group(1), m.group(2) or "")),
        text,
    )
    cfg: dict[str, Any] = yaml.safe_load(text)
    return cfg


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


def test_endpoints_agree_between_compose_and_the_collector_configs() -> None:
    agent = _collector_env("otel-agent", "agent.yaml")
    gateway = _collector_env("otel-gateway", "gateway.yaml")
    host, port = agent["exporters"]["otlp/gateway"]["endpoint"].split(":")
    assert host == "otel-gateway"
    assert host in services()
    assert int(port) == _port(gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert agent["exporters"]["otlp/gateway"]["tls"]["insecure"] is True
    for exporter, service in (("otlp/jaeger", "jaeger"), ("otlp/tempo", "tempo")):
        target = gateway["exporters"][exporter]["endpoint"]
        assert target.split(":")[0] == service
        assert service in services()
        assert _port(target) == 4317
        assert gateway["exporters"][exporter]["tls"]["insecure"] is True
    tempo = load(DEPLOY / "tempo" / "tempo.yaml")
    assert _port(tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]) == 4317
    remote_write = urlparse(gateway["exporters"]["prometheusremotewrite"]["endpoint"])
    assert remote_write.hostname == "prometheus"
    assert remote_write.path == "/api/v1/write"
    assert remote_write.port in published("prometheus")
    assert "--web.enable-remote-write-receiver" in services()["prometheus"]["command"]
    logs = urlparse(gateway["exporters"]["otlphttp/logs"]["endpoint"])
    assert logs.hostname == "loki"
    assert logs.port in published("loki")
    assert _port(gateway["exporters"]["prometheus"]["endpoint"]) in published("otel-gateway")
    assert _port(gateway["extensions"]["health_check"]["endpoint"]) in published("otel-gateway")
    for port in (4317, 4318):
        assert port in published("otel-agent")


def test_prometheus_loads_the_shipped_rules_and_talks_to_alertmanager(tmp_path: Path) -> None:
    prom = load(DEPLOY / "prometheus" / "prometheus.yml")
    (pattern,) = prom["rule_files"]
    rules_dir = mount_of("prometheus", str(Path(pattern).parent))
    assert sorted(rules_dir.glob(Path(pattern).name)) == sorted(alerts_gen.RULES_DIR.glob("*.yaml"))
    (am,) = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = am.split(":")
    assert host == "alertmanager"
    assert int(port) in published("alertmanager")
    assert "--enable-feature=exemplar-storage" in services()["prometheus"]["command"]
    assert mount_of("prometheus", "/etc/prometheus/prometheus.yml").name == "prometheus.yml"
    promtool = shutil.which("promtool")
    if promtool:  # the file as Prometheus will read it, with the rules where it mounts them
        prom["rule_files"] = [str(alerts_gen.RULES_DIR / Path(pattern).name)]
        local = tmp_path / "prometheus.yml"
        local.write_text(yaml.safe_dump(prom), encoding="utf-8")
        result = subprocess.run(
            [promtool, "check", "config", str(local)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_config_routes_by_severity() -> None:
    am = load(DEPLOY / "alertmanager" / "alertmanager.yml")
    receivers = {r["name"] for r in am["receivers"]}
    assert am["route"]["receiver"] in receivers
    for route in am["route"]["routes"]:
        assert route["receiver"] in receivers
    alert_names = set(alerts_gen.ALERT_ORDER)
    for rule in am.get("inhibit_rules", []):
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            names = re.findall(r"Jobpulse\w+", matcher)
            assert set(names) <= alert_names, matcher


def test_grafana_provisions_the_shipped_dashboards_and_data_sources() -> None:
    grafana = services()["grafana"]
    provisioning = mount_of("grafana", "/etc/grafana/provisioning")
    (provider,) = load(provisioning / "dashboards" / "jobpulse.yaml")["providers"]
    dashboards_dir = mount_of("grafana", provider["options"]["path"])
    assert dashboards_dir == ROOT / "dashboards" / "json"
    assert sorted(p.name for p in dashboards_dir.glob("*.json")) == [
        "jobpulse-job.json",
        "jobpulse-overview.json",
    ]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards_dir / Path(home).name).is_file()
    assert home.startswith(provider["options"]["path"])
    sources = {
        d["uid"]: d for d in load(provisioning / "datasources" / "datasources.yaml")["datasources"]
    }
    cfg = alerts_gen.load_config()
    assert sources[cfg["links"]["tempo_datasource_uid"]]["type"] == "tempo"
    expected = {
        "prometheus": 9090,
        "tempo": 3200,
        "jaeger": 16686,
        "loki": 3100,
        "alertmanager": 9093,
    }
    for uid, port in expected.items():
        url = urlparse(sources[uid]["url"])
        assert url.hostname in services(), uid
        assert url.port == port, uid
    prometheus = sources["prometheus"]
    assert prometheus["isDefault"] is True
    for dest in prometheus["jsonData"]["exemplarTraceIdDestinations"]:
        assert dest["datasourceUid"] in sources
        assert dest["name"] == "trace_id"
    for field in sources["loki"]["jsonData"]["derivedFields"]:
        assert field["datasourceUid"] in sources
        assert "$${" in field["url"] or "${" not in field["url"], "escape $ in provisioning"


def test_alert_and_dashboard_links_match_the_published_ports() -> None:
    cfg = alerts_gen.load_config()
    grafana = urlparse(cfg["links"]["grafana_url"])
    assert grafana.port in published("grafana")
    jaeger = urlparse(cfg["links"]["jaeger_url"])
    assert jaeger.port in published("jaeger")


def test_compose_file_parses_with_docker_when_available() -> None:
    docker = shutil.which("docker")
    commands = []
    if docker is not None:
        commands.append([docker, "compose"])
    if shutil.which("docker-compose"):
        commands.append([str(shutil.which("docker-compose"))])
    for command in commands:
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            break
    else:
        pytest.skip("no docker compose here; checked structurally above")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_promtool_is_installed_for_ci() -> None:
    require_binary("promtool")
