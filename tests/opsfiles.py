"""Reads the operations files (dashboard JSON, alert rules) and the metric names they use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "grafana" / "dashboards" / "upload-screening.json"
RULES = REPO / "deploy" / "prometheus" / "screening-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "screening-rules.test.yml"

#: Grafana variables replaced so an expression can be sent to Prometheus as is.
GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "1m", "$instance": ".*", "$list": ".*"}

#: Metric-like words in PromQL that are functions or keywords, not metrics.
_METRIC_WORD = re.compile(r"\b(screening_[a-z0-9_]+|up)\b(?!\s*\()")


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
