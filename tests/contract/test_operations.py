"""Contract tests for operations: metric hygiene, and that dashboards, rules and the README only
name metrics the metrics module defines. Rule behaviour is tested by promtool (real binary)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import Counter, Gauge, Histogram, Info

from pipeline.metrics import PREFIX, PipelineMetrics
from tests.opsfiles import (
    DASHBOARD,
    REPO,
    RULE_TESTS,
    RULES,
    base_metric,
    dashboard,
    dashboard_expressions,
    metric_names,
    rule_expressions,
    rules,
)

#: Label names that would carry per-upload or per-person values into Prometheus.
FORBIDDEN_LABELS = {"upload_id", "uploader_id", "user_id", "user", "url", "hash", "entry_id", "id"}
UNIT_SUFFIXES = ("_seconds", "_bytes")


def defined_metrics() -> dict[str, object]:
    metrics = PipelineMetrics()
    return {
        collector._name: collector  # type: ignore[attr-defined]
        for collector in vars(metrics).values()
        if isinstance(collector, Counter | Gauge | Histogram | Info)
    }


def exposed_names() -> set[str]:
    """Family names as Prometheus sees them (counters with _total, info with _info)."""
    names = set()
    for name, collector in defined_metrics().items():
        if isinstance(collector, Counter):
            names.add(f"{name}_total")
        elif isinstance(collector, Info):
            names.add(f"{name}_info")
        else:
            names.add(name)
    return names


def test_every_metric_follows_the_naming_rules() -> None:
    collectors = defined_metrics()
    assert len(collectors) >= 20
    for name, collector in collectors.items():
        assert name.startswith(f"{PREFIX}_"), name
        labels = set(collector._labelnames)  # type: ignore[attr-defined]
        assert not labels & FORBIDDEN_LABELS, (name, labels)
        if isinstance(collector, Histogram):
            assert name.endswith(UNIT_SUFFIXES), f"histogram {name} needs a unit suffix"
        if isinstance(collector, Gauge):
            assert not name.endswith("_total"), name
        if name.endswith("_timestamp_seconds"):
            assert isinstance(collector, Gauge), name


def test_dashboard_and_rules_name_only_defined_metrics() -> None:
    known = exposed_names() | {"up", "screening_build_info"}
    expressions = {**dashboard_expressions(), **rule_expressions()}
    assert len(expressions) >= 30
    used: set[str] = set()
    for where, expr in expressions.items():
        names = {base_metric(n) for n in metric_names(expr)}
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{where} uses undefined metrics {unknown}"
        used |= names
    # The dashboard and rules together cover the operationally important families.
    assert {"screening_verdicts_total", "screening_consumer_lag_messages",
            "screening_alert_deliveries_total", "screening_ready"} <= used  # fmt: skip


def test_readme_documents_every_metric() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name in sorted(exposed_names()) if f"`{name}`" not in readme]
    assert not missing, f"README metrics table lacks {missing}"


def test_dashboard_is_templated_by_worker_and_list() -> None:
    data = dashboard()
    variables = {v["name"] for v in data["templating"]["list"]}
    assert {"instance", "list"} <= variables
    titles = " ".join(p["title"] for p in data["panels"]).lower()
    for topic in ("screened", "verdict", "match", "latency", "lag", "dead letter", "index",
                  "age", "deliver", "ready"):  # fmt: skip
        assert topic in titles, f"dashboard has no panel about {topic!r}"
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_every_rule_has_summary_runbook_and_tests() -> None:
    readme = (REPO / "README.md").read_text()
    tests = RULE_TESTS.read_text()
    for rule in rules():
        name = rule["alert"]
        assert rule["annotations"]["summary"], name
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == f"runbook-{name.lower()}"
        assert f'<a id="{anchor}"></a>' in readme, f"README lacks the runbook for {name}"
        assert tests.count(f"alertname: {name}") >= 2, f"{name} needs a firing and a quiet case"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (.ci/install-test-deps installs it)"
    return path


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    subprocess.run([tool("promtool"), "check", "rules", str(RULES)], check=True)
    result = subprocess.run(
        [tool("promtool"), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["docker-compose", "config", "-q"],
        ["amtool", "check-config", "deploy/alertmanager/alertmanager.yml"],
    ],
    ids=["docker-compose", "alertmanager"],
)
def test_deployment_files_validate(command: list[str]) -> None:
    result = subprocess.run(
        [tool(command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_stack_has_every_part_and_scales_workers() -> None:
    import yaml

    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "worker", "prometheus", "alertmanager", "grafana", "demo-producer"} <= set(
        services
    )
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "KRaft" in (REPO / "docker-compose.yml").read_text()
    worker = services["worker"]
    assert "container_name" not in worker, "would block --scale"
    assert "ports" not in worker, "would block --scale"
    assert DASHBOARD.exists()
