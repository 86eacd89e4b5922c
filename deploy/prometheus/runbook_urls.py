"""Point every alert's runbook_url at your runbooks: rewrites screening-rules.yml and its promtool
tests (screening-rules.test.yml) in place.

    python3 deploy/prometheus/runbook_urls.py https://wiki.example.org/screening/runbooks
    python3 deploy/prometheus/runbook_urls.py 'https://runbooks.example.org/screening/{anchor}'

An alert's URL is the base plus ``#runbook-<alert name in lower case>`` (the anchors of the
README's "Alert rules and runbooks" section, so a copy of that section works as the target), or
the base with ``{anchor}`` replaced by that anchor. The rules ship pointing at the README in the
project's repository (DEFAULT_BASE). A runbook link must work from a pager or Alertmanager's UI,
so the base must be an absolute http(s) URL. Python standard library only; formatting and
comments are kept (only the runbook_url lines change). Prometheus rule files cannot read the
environment, hence a rewrite rather than a setting.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BASE = "https://github.com/upload-screening/upload-screening-pipeline/blob/main/README.md"
HERE = Path(__file__).resolve().parent
RULES = HERE / "screening-rules.yml"

#: ``- alert: Name`` in a rule file, ``alertname: Name`` in a promtool test file.
_ALERT = re.compile(r"^\s*(?:-\s+alert|alertname):\s*(\w+)\s*$")
_RUNBOOK = re.compile(r"^(\s*runbook_url:\s*)(\S.*?)\s*$")


def anchor(alert: str) -> str:
    """The README anchor of an alert's runbook, e.g. ``runbook-screeningstalled``."""
    return f"runbook-{alert.lower()}"


def runbook_url(base: str, alert: str) -> str:
    """The runbook URL of ``alert`` under ``base`` (``{anchor}`` replaced, else ``#anchor``)."""
    if "{anchor}" in base:
        return base.replace("{anchor}", anchor(alert))
    return f"{base}#{anchor(alert)}"


def check_base(base: str) -> None:
    """Raise ValueError unless ``base`` is an absolute http(s) URL without a fragment."""
    parts = urlsplit(base.replace("{anchor}", "x"))
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{base!r} is not an absolute http(s) URL")
    if parts.fragment and "{anchor}" not in base:
        raise ValueError(f"{base!r} has a #fragment; the alert's anchor is appended as one")


def rewrite(text: str, base: str) -> tuple[str, int]:
    """``text`` with every runbook_url pointing under ``base``, and how many were rewritten.

    Each runbook_url belongs to the alert named last above it. A runbook_url before any alert
    name is an error (ValueError), not a guess.
    """
    lines = text.splitlines(keepends=True)
    alert: str | None = None
    count = 0
    for i, line in enumerate(lines):
        if named := _ALERT.match(line):
            alert = named.group(1)
        elif found := _RUNBOOK.match(line):
            if alert is None:
                raise ValueError(f"line {i + 1}: runbook_url before any alert name")
            ending = line[len(line.rstrip("\r\n")) :]
            lines[i] = f'{found.group(1)}"{runbook_url(base, alert)}"{ending}'
            count += 1
    return "".join(lines), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help=f"runbook base URL (the shipped one: {DEFAULT_BASE})")
    parser.add_argument(
        "--rules",
        type=Path,
        default=RULES,
        help="rule file to rewrite; its <name>.test.yml beside it is rewritten too",
    )
    args = parser.parse_args(argv)
    try:
        check_base(args.base)
        rules = args.rules
        files = [rules, rules.with_name(rules.name.removesuffix(".yml") + ".test.yml")]
        for path in files:
            if not path.exists():
                continue
            text, count = rewrite(path.read_text(), args.base)
            if count == 0:
                raise ValueError(f"{path}: no runbook_url found")
            path.write_text(text)
            print(f"{path}: {count} runbook_url(s) now under {args.base}")
    except (OSError, ValueError) as exc:
        print(f"runbook_urls: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
