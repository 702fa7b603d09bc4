"""The collector configs: wired completely, from otelcol-contrib, keys the components accept.

There is no otelcol binary here, so the configuration schema is checked against
tables written from each component's documented configuration (README and
config.go) at the version below.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT

COLLECTOR = ROOT / "collector"
CONFIGS = {"agent": COLLECTOR / "agent.yaml", "gateway": COLLECTOR / "gateway.yaml"}

#: Source: open-telemetry/opentelemetry-collector-releases,
#: distributions/otelcol-contrib/manifest.yaml (component modules v0.136.0).
#: Component type (as written in a config) -> the module that provides it.
OTELCOL_CONTRIB_VERSION = "0.136.0"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
OTELCOL_CONTRIB: dict[str, dict[str, str]] = {
    "receivers": {
        "otlp": "go.opentelemetry.io/collector/receiver/otlpreceiver",
        "prometheus": f"{CONTRIB}/receiver/prometheusreceiver",
        "filelog": f"{CONTRIB}/receiver/filelogreceiver",
        "hostmetrics": f"{CONTRIB}/receiver/hostmetricsreceiver",
        "jaeger": f"{CONTRIB}/receiver/jaegerreceiver",
        "zipkin": f"{CONTRIB}/receiver/zipkinreceiver",
    },
    "processors": {
        "batch": "go.opentelemetry.io/collector/processor/batchprocessor",
        "memory_limiter": "go.opentelemetry.io/collector/processor/memorylimiterprocessor",
        "resourcedetection": f"{CONTRIB}/processor/resourcedetectionprocessor",
        "tail_sampling": f"{CONTRIB}/processor/tailsamplingprocessor",
        "attributes": f"{CONTRIB}/processor/attributesprocessor",
        "resource": f"{CONTRIB}/processor/resourceprocessor",
        "transform": f"{CONTRIB}/processor/transformprocessor",
        "filter": f"{CONTRIB}/processor/filterprocessor",
        "k8sattributes": f"{CONTRIB}/processor/k8sattributesprocessor",
        "probabilistic_sampler": f"{CONTRIB}/processor/probabilisticsamplerprocessor",
    },
    "exporters": {
        "otlp": "go.opentelemetry.io/collector/exporter/otlpexporter",
        "otlphttp": "go.opentelemetry.io/collector/exporter/otlphttpexporter",
        "debug": "go.opentelemetry.io/collector/exporter/debugexporter",
        "prometheus": f"{CONTRIB}/exporter/prometheusexporter",
        "prometheusremotewrite": f"{CONTRIB}/exporter/prometheusremotewriteexporter",
        "loadbalancing": f"{CONTRIB}/exporter/loadbalancingexporter",
        "file": f"{CONTRIB}/exporter/fileexporter",
    },
    "connectors": {
        "forward": "go.opentelemetry.io/collector/connector/forwardconnector",
        "spanmetrics": f"{CONTRIB}/connector/spanmetricsconnector",
        "servicegraph": f"{CONTRIB}/connector/servicegraphconnector",
        "count": f"{CONTRIB}/connector/countconnector",
    },
    "extensions": {
        "health_check": f"{CONTRIB}/extension/healthcheckextension",
        "pprof": f"{CONTRIB}/extension/pprofextension",
        "zpages": "go.opentelemetry.io/collector/extension/zpagesextension",
        "bearertokenauth": f"{CONTRIB}/extension/bearertokenauthextension",
        "basicauth": f"{CONTRIB}/extension/basicauthextension",
        "file_storage": f"{CONTRIB}/extension/storage/filestorage",
    },
}

# -- configuration schemas: the keys each component accepts -------------------------
# Written from the components' READMEs / config.go (open-telemetry/opentelemetry-
# collector-contrib: processor/tailsamplingprocessor, connector/spanmetricsconnector,
# exporter/prometheusexporter, exporter/prometheusremotewriteexporter,
# processor/resourcedetectionprocessor, extension/healthcheckextension; the core's
# receiver/otlpreceiver, processor/{batch,memorylimiter}processor,
# exporter/otlp{,http}exporter, config/{confighttp,configtls}, exporterhelper).
# The configs are written against v0.136.0 (OTELCOL_CONTRIB_VERSION).
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
ANY = object()  # a leaf whose value is not checked further

_TLS_CLIENT = {
    "insecure": bool, "insecure_skip_verify": bool, "ca_file": str, "cert_file": str,
    "key_file": str, "server_name_override": str, "min_version": str,
}  # fmt: skip
_QUEUE = {"enabled": bool, "num_consumers": int, "queue_size": int, "storage": str,
          "blocking": bool, "sizer": str, "batch": ANY}  # fmt: skip
_RETRY = {
    "enabled": bool, "initial_interval": "duration", "max_interval": "duration",
    "max_elapsed_time": "duration", "multiplier": float, "randomization_factor": float,
}  # fmt: skip
_HTTP_CLIENT = {
    "endpoint": str, "tls": _TLS_CLIENT, "headers": {str: str}, "timeout": "duration",
    "compression": str, "read_buffer_size": int, "write_buffer_size": int, "auth": ANY,
    "proxy_url": str, "max_idle_conns": int, "idle_conn_timeout": "duration",
}  # fmt: skip
_SERVER = {"endpoint": str, "tls": ANY, "auth": ANY}

SCHEMAS: dict[str, dict[str, Any]] = {
    "receivers/otlp": {
        "protocols": {
            "grpc": {**_SERVER, "max_recv_msg_size_mib": int, "max_concurrent_streams": int,
                     "keepalive": ANY, "include_metadata": bool, "transport": str},
            "http": {**_SERVER, "cors": ANY, "include_metadata": bool, "traces_url_path": str,
                     "metrics_url_path": str, "logs_url_path": str},
        }
    },
    "processors/memory_limiter": {
        "check_interval": "duration", "limit_mib": int, "spike_limit_mib": int,
        "limit_percentage": int, "spike_limit_percentage": int,
    },
    "processors/batch": {
        "timeout": "duration", "send_batch_size": int, "send_batch_max_size": int,
        "metadata_keys": [str], "metadata_cardinality_limit": int,
    },
    "processors/resourcedetection": {
        "detectors": [str], "timeout": "duration", "override": bool,
        "system": {"hostname_sources": [str], "resource_attributes": ANY},
        "env": ANY, "docker": ANY, "ec2": ANY, "ecs": ANY, "eks": ANY, "gcp": ANY,
        "azure": ANY, "aks": ANY, "k8snode": ANY, "openshift": ANY, "consul": ANY,
        "heroku": ANY, "lambda": ANY, "elasticbeanstalk": ANY, "dynatrace": ANY,
        "kubeadm": ANY, "client": ANY,
    },
    "processors/tail_sampling": {
        "decision_wait": "duration", "num_traces": int, "expected_new_traces_per_sec": int,
        "decision_cache": {"sampled_cache_size": int, "non_sampled_cache_size": int},
        "policies": [ANY], "sample_on_first_match": bool,
        "drop_pending_traces_on_shutdown": bool,
    },
    "connectors/spanmetrics": {
        "histogram": {"disable": bool, "unit": str, "explicit": {"buckets": ["duration"]},
                      "exponential": {"max_size": int}},
        "dimensions": [{"name": str, "default": str}], "exclude_dimensions": [str],
        "dimensions_cache_size": int, "resource_metrics_cache_size": int,
        "aggregation_temporality": str, "namespace": str,
        "metrics_flush_interval": "duration", "metrics_expiration": "duration",
        "exemplars": {"enabled": bool, "max_per_data_point": int}, "events": ANY,
        "resource_metrics_key_attributes": [str], "delta_temporality": ANY,
    },
    "connectors/forward": {},
    "exporters/otlp": {
        **_HTTP_CLIENT, "sending_queue": _QUEUE, "retry_on_failure": _RETRY,
        "balancer_name": str, "keepalive": ANY, "wait_for_ready": bool,
    },
    "exporters/otlphttp": {
        **_HTTP_CLIENT, "sending_queue": _QUEUE, "retry_on_failure": _RETRY,
        "traces_endpoint": str, "metrics_endpoint": str, "logs_endpoint": str, "encoding": str,
    },
    "exporters/prometheus": {
        "endpoint": str, "tls": ANY, "const_labels": {str: str}, "namespace": str,
        "send_timestamps": bool, "metric_expiration": "duration",
        "resource_to_telemetry_conversion": {"enabled": bool}, "enable_open_metrics": bool,
        "add_metric_suffixes": bool, "without_scope_info": bool, "translation_strategy": str,
    },
    "exporters/prometheusremotewrite": {
        **_HTTP_CLIENT, "external_labels": {str: str}, "namespace": str,
        "add_metric_suffixes": bool,
        "remote_write_queue": {"enabled": bool, "queue_size": int, "num_consumers": int},
        "resource_to_telemetry_conversion": {"enabled": bool}, "target_info": {"enabled": bool},
        "export_created_metric": {"enabled": bool}, "retry_on_failure": _RETRY, "wal": ANY,
        "max_batch_size_bytes": int, "send_metadata": bool,
    },
    "extensions/health_check": {"endpoint": str, "path": str, "response_body": ANY, "tls": ANY},
}  # fmt: skip

TAIL_POLICIES: dict[str, dict[str, Any]] = {
    "always_sample": {},
    "latency": {"threshold_ms": int, "upper_threshold_ms": int},
    "numeric_attribute": {"key": str, "min_value": int, "max_value": int, "invert_match": bool},
    "probabilistic": {"hash_salt": str, "sampling_percentage": float},
    "status_code": {"status_codes": [str]},
    "string_attribute": {
        "key": str,
        "values": [str],
        "enabled_regex_matching": bool,
        "cache_max_size": int,
        "invert_match": bool,
    },
    "rate_limiting": {"spans_per_second": int},
    "span_count": {"min_spans": int, "max_spans": int},
    "boolean_attribute": {"key": str, "value": bool},
    "ottl_condition": {"error_mode": str, "span": [str], "spanevent": [str]},
}

_ENV = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}")


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def expand(value: Any) -> Any:
    """The config as the collector sees it with every variable at its default."""
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, str) and "${" in value:
        whole = _ENV.fullmatch(value)
        if whole:  # a whole-value variable is re-parsed as YAML (typed), like confmap does
            return yaml.safe_load(whole.group(2) or "") if whole.group(2) else ""
        return _ENV.sub(lambda m: m.group(2) or "", value)
    return value


def check(value: Any, schema: Any, where: str) -> None:
    if schema is ANY:
        return
    if schema == "duration":
        assert isinstance(value, str), f"{where}: {value!r} not a duration"
        assert DURATION.match(value), f"{where}: {value!r} not a duration"
    elif isinstance(schema, type):
        if schema is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, schema) and not (schema is int and isinstance(value, bool))
        assert ok, f"{where}: {value!r} is not {schema.__name__}"
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            check(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, dict):
        if value is None:
            return
        assert isinstance(value, dict), f"{where}: expected a mapping"
        if list(schema) == [str]:
            for k, v in value.items():
                check(k, str, where)
                check(v, schema[str], f"{where}.{k}")
            return
        unknown = set(value) - set(schema)
        assert not unknown, f"{where}: keys {sorted(unknown)} are not in its config schema"
        for k, v in value.items():
            check(v, schema[k], f"{where}.{k}")


def component_type(name: str) -> str:
    return name.split("/", 1)[0]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_used_component_is_defined_and_every_defined_one_used(name: str) -> None:
    cfg = load(CONFIGS[name])
    service = cfg["service"]
    defined = {
        kind: set(cfg.get(kind) or {})
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions")
    }
    used: dict[str, set[str]] = {kind: set() for kind in defined}
    used["extensions"] = set(service.get("extensions", []))
    connectors = defined["connectors"]
    for pipeline, spec in service["pipelines"].items():
        assert pipeline.split("/")[0] in ("traces", "metrics", "logs"), pipeline
        for r in spec["receivers"]:
            used["connectors" if r in connectors else "receivers"].add(r)
        used["processors"].update(spec.get("processors", []))
        for e in spec["exporters"]:
            used["connectors" if e in connectors else "exporters"].add(e)
    for kind in defined:
        assert used[kind] <= defined[kind], f"{name}: {kind} used but not defined"
        assert defined[kind] <= used[kind], f"{name}: {kind} defined but never used"
    for connector in connectors:  # a connector joins two pipelines
        as_exporter = [p for p, s in service["pipelines"].items() if connector in s["exporters"]]
        as_receiver = [p for p, s in service["pipelines"].items() if connector in s["receivers"]]
        assert as_exporter, connector
        assert as_receiver, connector


@pytest.mark.parametrize("name", CONFIGS)
def test_every_component_type_is_in_otelcol_contrib(name: str) -> None:
    cfg = load(CONFIGS[name])
    for kind in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for component in cfg.get(kind) or {}:
            assert component_type(component) in OTELCOL_CONTRIB[kind], (
                f"{name}: {kind[:-1]} {component!r} is not in otelcol-contrib "
                f"{OTELCOL_CONTRIB_VERSION}"
            )


@pytest.mark.parametrize("name", CONFIGS)
def test_component_settings_match_their_documented_schema(name: str) -> None:
    cfg = expand(load(CONFIGS[name]))
    for kind in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for component, settings in (cfg.get(kind) or {}).items():
            key = f"{kind}/{component_type(component)}"
            assert key in SCHEMAS, f"{name}: no schema table for {key}; add one from its README"
            check(settings, SCHEMAS[key], f"{name}:{kind}.{component}")
    for processor, settings in (cfg.get("processors") or {}).items():
        if component_type(processor) != "tail_sampling":
            continue
        names = [p["name"] for p in settings["policies"]]
        assert len(names) == len(set(names)), "policy names are unique"
        for policy in settings["policies"]:
            assert set(policy) == {"name", "type", policy["type"]}, policy
            assert policy["type"] in TAIL_POLICIES, policy["type"]
            check(policy[policy["type"]], TAIL_POLICIES[policy["type"]], f"policy {policy['name']}")


@pytest.mark.parametrize("name", CONFIGS)
def test_memory_limiter_first_and_batch_last(name: str) -> None:
    cfg = load(CONFIGS[name])
    for pipeline, spec in cfg["service"]["pipelines"].items():
        processors = spec.get("processors", [])
        fed_by_receiver = any(r in (cfg.get("receivers") or {}) for r in spec["receivers"])
        if fed_by_receiver:
            assert processors[0] == "memory_limiter", f"{name}:{pipeline}"
        if "batch" in processors:
            assert processors[-1] == "batch", f"{name}:{pipeline}"


@pytest.mark.parametrize("name", CONFIGS)
def test_otlp_in_on_4317_and_4318_and_health_check(name: str) -> None:
    cfg = expand(load(CONFIGS[name]))
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert cfg["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    assert "health_check" in cfg["service"]["extensions"]


def test_agent_batches_detects_resources_and_forwards_to_the_gateway() -> None:
    cfg = expand(load(CONFIGS["agent"]))
    for spec in cfg["service"]["pipelines"].values():
        assert spec["processors"] == ["memory_limiter", "resourcedetection", "batch"]
        assert spec["exporters"] == ["otlp/gateway"]
    assert cfg["processors"]["resourcedetection"]["override"] is False
    gateway = expand(load(CONFIGS["gateway"]))
    port = gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    assert cfg["exporters"]["otlp/gateway"]["endpoint"].endswith(f":{port}")


def test_gateway_splits_traces_so_spanmetrics_sees_every_span() -> None:
    cfg = load(CONFIGS["gateway"])
    pipelines = cfg["service"]["pipelines"]
    (intake,) = [
        p for p, s in pipelines.items() if "otlp" in s["receivers"] and p.startswith("traces")
    ]
    assert "tail_sampling" not in pipelines[intake]["processors"]
    assert set(pipelines[intake]["exporters"]) == {"spanmetrics", "forward"}
    (sampled,) = [p for p, s in pipelines.items() if "forward" in s["receivers"]]
    assert "tail_sampling" in pipelines[sampled]["processors"]
    assert set(pipelines[sampled]["exporters"]) == {"otlp/jaeger", "otlp/tempo"}
    metrics = pipelines["metrics"]
    assert set(metrics["receivers"]) == {"otlp", "spanmetrics"}
    assert set(metrics["exporters"]) == {"prometheus", "prometheusremotewrite"}


def test_tail_sampling_keeps_unsuccessful_stalled_and_slow_runs() -> None:
    cfg = expand(load(CONFIGS["gateway"]))
    ts = cfg["processors"]["tail_sampling"]
    policies = {p["type"]: p for p in ts["policies"]}
    outcome = policies["string_attribute"]["string_attribute"]
    assert outcome["key"] == "jobpulse.outcome"
    assert set(outcome["values"]) == {"error", "timeout", "cancelled", "lost"}, "all but success"
    assert 'name == "jobpulse.stalled"' in policies["ottl_condition"]["ottl_condition"]["spanevent"]
    assert policies["latency"]["latency"]["threshold_ms"] > 0
    decision_wait = ts["decision_wait"]
    assert DURATION.match(decision_wait)
    assert int(decision_wait.rstrip("s")) >= 300, "long enough for long jobs"
    readme = (COLLECTOR / "README.md").read_text(encoding="utf-8")
    assert "decision_wait" in readme
    assert "trade-off" in readme


def test_every_environment_variable_is_documented() -> None:
    readme = (COLLECTOR / "README.md").read_text(encoding="utf-8")
    for path in CONFIGS.values():
        for var, default in _ENV.findall(path.read_text(encoding="utf-8")):
            row = re.search(rf"^\| `{var}` \|[^|]*\| `?([^|`]*)`? \|", readme, re.M)
            assert row, f"{var} ({path.name}) is not in collector/README.md's table"
            documented = row.group(1).strip()
            assert documented == (default or "empty"), (var, default, documented)
