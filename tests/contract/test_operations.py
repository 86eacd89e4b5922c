"""Contract tests for operations: metric hygiene, and that dashboards, rules and the README only
name metrics the metrics module defines. Rule behaviour is tested by promtool (real binary)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

from pipeline.metrics import PREFIX, PipelineMetrics
from tests.opsfiles import (
    ALERT_LOG,
    ALERTMANAGER_CONFIG,
    CONSTRAINTS,
    DASHBOARD,
    DOCKERFILE,
    REPO,
    RULE_TESTS,
    RULES,
    RUNBOOK_TOOL,
    base_metric,
    compose_services,
    constraints_text,
    dashboard,
    dashboard_expressions,
    metric_names,
    pinned_constraints,
    rule_expressions,
    rules,
    runtime_dependencies,
)

#: Label names that would carry per-upload or per-person values into Prometheus.
FORBIDDEN_LABELS = {"upload_id", "uploader_id", "user_id", "user", "url", "hash", "entry_id", "id"}
#: The one exception: quarantined entries are named so the alert can name them. Its series exist
#: only while an entry is quarantined and are capped per worker (MAX_NAMED_QUARANTINES; tested in
#: tests/unit/test_metrics_state.py), so the label cannot grow with a list's size.
BOUNDED_ENTRY_LABEL_METRICS = {"screening_entry_quarantined_timestamp_seconds"}
UNIT_SUFFIXES = ("_seconds", "_bytes")


def defined_metrics() -> dict[str, object]:
    metrics = PipelineMetrics()
    return {
        collector._name: collector  # type: ignore[attr-defined]
        for collector in vars(metrics).values()
        if isinstance(collector, Counter | Gauge | Histogram | Info)
    }


def process_metric_names() -> set[str]:
    """The standard process_* families prometheus_client adds to the workers' registry."""
    families = ProcessCollector(registry=CollectorRegistry()).collect()
    return {f"{f.name}_total" if f.type == "counter" else f.name for f in families}


def exposed_names() -> set[str]:
    """Family names as Prometheus sees them (counters with _total, info with _info), the
    standard process_* ones included."""
    names = process_metric_names()
    for name, collector in defined_metrics().items():
        if isinstance(collector, Counter):
            names.add(f"{name}_total")
        elif isinstance(collector, Info):
            names.add(f"{name}_info")
        else:
            names.add(name)
    return names


def test_the_workers_export_their_resident_memory() -> None:
    """The README's memory bound and OOM runbook read it."""
    assert "process_resident_memory_bytes" in process_metric_names()
    assert "process_resident_memory_bytes" in exposed_names()


def test_every_metric_follows_the_naming_rules() -> None:
    collectors = defined_metrics()
    assert len(collectors) >= 20
    for name, collector in collectors.items():
        assert name.startswith(f"{PREFIX}_"), name
        labels = set(collector._labelnames)  # type: ignore[attr-defined]
        allowed = {"entry_id"} if name in BOUNDED_ENTRY_LABEL_METRICS else set()
        assert not labels & (FORBIDDEN_LABELS - allowed), (name, labels)
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
    for topic in ("not written", "re-created", "resets", "held"):  # issue 12's failure signals
        assert topic in titles, f"dashboard has no panel about {topic!r}"
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            assert 'instance=~"$instance"' in target["expr"], panel["title"]


def runbook_urls(path: Path) -> dict[str, set[str]]:
    """Alert name -> the runbook URLs a rule file or a promtool test file gives it."""
    data = yaml.safe_load(path.read_text())
    found: dict[str, set[str]] = {}
    if "groups" in data:
        for rule in (rule for group in data["groups"] for rule in group["rules"]):
            found.setdefault(rule["alert"], set()).add(rule["annotations"]["runbook_url"])
    for case in data.get("tests", []):
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                url = alert.get("exp_annotations", {}).get("runbook_url")
                if url is not None:
                    found.setdefault(check["alertname"], set()).add(url)
    return found


def test_every_rule_has_summary_runbook_and_tests() -> None:
    readme = (REPO / "README.md").read_text()
    tests = RULE_TESTS.read_text()
    urls = runbook_urls(RULES)
    for rule in rules():
        name = rule["alert"]
        assert rule["annotations"]["summary"], name
        # Absolute: a relative link is dead in Alertmanager's UI, a pager or a chat message.
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.scheme == "https", f"{name}: runbook_url must be absolute: {url.geturl()}"
        assert url.netloc, f"{name}: runbook_url must be absolute: {url.geturl()}"
        assert url.path.endswith("/README.md"), f"{name}: the runbooks are in the README"
        assert url.fragment == f"runbook-{name.lower()}"
        assert f'<a id="{url.fragment}"></a>' in readme, f"README lacks the runbook for {name}"
        assert tests.count(f"alertname: {name}") >= 2, f"{name} needs a firing and a quiet case"
    bases = {url.split("#", 1)[0] for alert_urls in urls.values() for url in alert_urls}
    assert len(bases) == 1, f"one runbook base for every alert (runbook_urls.py sets it): {bases}"
    tested = runbook_urls(RULE_TESTS)
    assert set(tested) == set(urls), "every alert's firing case checks its runbook_url"
    for name, alert_urls in tested.items():
        assert alert_urls == urls[name], f"{name}: the promtool test expects another runbook_url"


def run_runbook_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNBOOK_TOOL), *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("base", "example"),
    [
        ("https://wiki.example.org/screening/runbooks", "https://wiki.example.org/screening/runbooks#runbook-screeningstalled"),
        ("https://runbooks.example.org/screening/{anchor}.html", "https://runbooks.example.org/screening/runbook-screeningstalled.html"),
    ],
    ids=["base-and-anchor", "pattern"],
)  # fmt: skip
def test_runbook_base_can_be_changed_in_rules_and_their_tests_together(
    tmp_path: Path, base: str, example: str
) -> None:
    """The README's documented way to point runbooks elsewhere rewrites the rules and their
    promtool tests together and keeps every alert's anchor. Only runbook_url lines change and
    each test expects its rule's new URL, so promtool passes as it does on the shipped files
    (not run again here: it takes ~30 s a run)."""
    shutil.copy(RULES, tmp_path / RULES.name)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = run_runbook_tool(base, "--rules", str(tmp_path / RULES.name))
    assert done.returncode == 0, done.stderr
    urls = runbook_urls(tmp_path / RULES.name)
    assert urls["ScreeningStalled"] == {example}
    assert all(len(u) == 1 and next(iter(u)).startswith(base[:20]) for u in urls.values())
    assert runbook_urls(tmp_path / RULE_TESTS.name) == {
        name: urls[name] for name in runbook_urls(RULE_TESTS)
    }
    # Only the runbook_url lines changed: expressions, comments and layout are kept.
    for original in (RULES, RULE_TESTS):
        before = original.read_text().splitlines()
        after = (tmp_path / original.name).read_text().splitlines()
        assert [a for a, b in zip(before, after, strict=True) if a != b] == [
            line for line in before if "runbook_url:" in line
        ]


@pytest.mark.parametrize("base", ["README.md", "/runbooks", "ftp://x.org/r", "https://x.org/r#a"])
def test_runbook_tool_refuses_a_base_that_is_not_an_absolute_url(tmp_path: Path, base: str) -> None:
    shutil.copy(RULES, tmp_path / RULES.name)
    done = run_runbook_tool(base, "--rules", str(tmp_path / RULES.name))
    assert done.returncode == 2
    assert done.stderr.startswith("runbook_urls: ")
    assert (tmp_path / RULES.name).read_text() == RULES.read_text()


def test_every_alertmanager_receiver_delivers_to_the_compose_log_receiver() -> None:
    """A receiver without configs drops every alert routed to it. The shipped receivers post
    to the stack's alert-log service (tests/integration/test_alert_receiver.py delivers
    through a real Alertmanager to it)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    routed = {config["route"]["receiver"]} | {r["receiver"] for r in config["route"]["routes"]}
    assert routed <= set(receivers)
    service = compose_services()["alert-log"]
    port = service["environment"]["ALERT_LOG_PORT"]
    assert f"./{ALERT_LOG.relative_to(REPO)}:/{ALERT_LOG.name}:ro" in service["volumes"]
    assert service["command"] == ["python", f"/{ALERT_LOG.name}"]
    for name, receiver in receivers.items():
        configs = [key for key in receiver if key.endswith("_configs")]
        assert configs, f"receiver {name} has no configs: every alert routed to it is dropped"
        urls = [hook["url"] for hook in receiver.get("webhook_configs", [])]
        assert f"http://alert-log:{port}/{name}" in urls
        assert all(hook.get("send_resolved") for hook in receiver["webhook_configs"])
    assert "alert-log" in compose_services()["alertmanager"]["depends_on"]


def test_constraints_pin_every_runtime_dependency_at_the_tested_version() -> None:
    """The image installs with deploy/constraints.txt and CI with the same file, so the image
    ships the versions the tests ran. A dependency added without a pin fails here."""
    installed = runtime_dependencies()
    pins = pinned_constraints()
    regenerate = (
        f"regenerate {CONSTRAINTS.relative_to(REPO)} (see its header); it should read:\n"
        + constraints_text()
    )
    assert set(pins) == set(installed), regenerate
    for name, (version, requirements) in installed.items():
        assert pins[name] == version, regenerate
        for requirement in requirements:
            assert requirement.specifier.contains(version, prereleases=True), (name, requirement)
    dockerfile = DOCKERFILE.read_text()
    assert "COPY deploy/constraints.txt ./deploy/" in dockerfile
    assert "pip install --constraint deploy/constraints.txt ." in dockerfile
    ci = (REPO / ".ci" / "install-test-deps").read_text()
    assert "--constraint deploy/constraints.txt" in ci


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
    services = compose_services()
    assert {
        "kafka", "worker", "prometheus", "alertmanager", "alert-log", "grafana", "demo-producer"
    } <= set(services)  # fmt: skip
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "KRaft" in (REPO / "docker-compose.yml").read_text()
    worker = services["worker"]
    assert "container_name" not in worker, "would block --scale"
    assert "ports" not in worker, "would block --scale"
    assert DASHBOARD.exists()
