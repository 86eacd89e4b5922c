"""Reads the operations files (dashboard JSON, alert rules, deployment files) and the metric names
they use. ``python -m tests.opsfiles constraints`` prints deploy/constraints.txt for the installed
environment (see that file)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "grafana" / "dashboards" / "upload-screening.json"
RULES = REPO / "deploy" / "prometheus" / "screening-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "screening-rules.test.yml"
RUNBOOK_TOOL = REPO / "deploy" / "prometheus" / "runbook_urls.py"
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
ALERT_LOG = REPO / "deploy" / "alertmanager" / "alert_log.py"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"

#: Grafana variables replaced so an expression can be sent to Prometheus as is.
GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "1m", "$instance": ".*", "$list": ".*"}

#: Metric-like words in PromQL that are functions or keywords, not metrics.
_METRIC_WORD = re.compile(r"\b(screening_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?!\s*\()")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_expressions() -> dict[str, str]:
    """Panel title (and target) -> PromQL, Grafana variables substituted."""
    found: dict[str, str] = {}
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_SUBSTITUTIONS.items():
                expr = expr.replace(variable, value)
            found[f"{panel['title']} [{target['refId']}]"] = expr
    return found


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def rule_expressions() -> dict[str, str]:
    return {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules()}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (without label matchers)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_METRIC_WORD.findall(without_strings))


def base_metric(name: str) -> str:
    """The family name of a histogram sample (``_bucket``/``_sum``/``_count`` stripped)."""
    return re.sub(r"_(bucket|sum|count)$", "", name)


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def runtime_dependencies() -> dict[str, tuple[str, list[Requirement]]]:
    """Every package the project needs at run time (extras left out): canonical name ->
    (installed version, the requirements naming it). The project's own requirements come from
    pyproject.toml (an editable install's metadata is stale until reinstalled), theirs from the
    installed metadata."""
    found: dict[str, tuple[str, list[Requirement]]] = {}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [Requirement(line) for line in project["dependencies"]]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement, or one for another platform or Python
        name = canonicalize_name(requirement.name)
        if name not in found:
            try:
                installed = distribution(requirement.name)
            except PackageNotFoundError:
                raise AssertionError(f"{requirement} is not installed") from None
            found[name] = (installed.version, [])
            pending += [Requirement(line) for line in installed.requires or []]
        found[name][1].append(requirement)
    return found


def pinned_constraints() -> dict[str, str]:
    """deploy/constraints.txt as canonical name -> pinned version."""
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def constraints_text() -> str:
    """deploy/constraints.txt for the installed environment: its header, then one pin a line."""
    header = [
        line for line in CONSTRAINTS.read_text().splitlines(keepends=True) if line.startswith("#")
    ]
    pins = [f"{name}=={version}\n" for name, (version, _) in sorted(runtime_dependencies().items())]
    return "".join(header + pins)


if __name__ == "__main__" and sys.argv[1:] == ["constraints"]:
    sys.stdout.write(constraints_text())
