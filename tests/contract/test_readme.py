"""The README stays true to the code: every setting documented, the two commands exact."""

from __future__ import annotations

import re

from pipeline.config import ENV_PREFIX, Settings
from tests.opsfiles import REPO

README = (REPO / "README.md").read_text()


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.DOTALL)


def test_every_setting_is_in_the_settings_table() -> None:
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"| `{ENV_PREFIX}{name.upper()}` |" not in README
    ]
    assert not missing, f"README's settings table lacks {missing}"


def test_readme_names_no_setting_that_does_not_exist() -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    named = set(re.findall(rf"`({ENV_PREFIX}[A-Z0-9_]+)`", README))
    assert named <= known, f"README names unknown settings {sorted(named - known)}"


def test_ci_runs_exactly_the_readme_test_line() -> None:
    test_line = shell_blocks()[1].strip()
    assert test_line == "bash .ci/install-test-deps && .venv/bin/python -m pytest"
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == test_line


def test_first_readme_line_installs_and_runs_the_demo() -> None:
    # The demo itself is run end to end by tests/integration/test_demo.py.
    assert shell_blocks()[0].strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[embedded]' && .venv/bin/pipeline demo"
    )


def test_every_s3_reason_is_in_the_s3_reasons_table() -> None:
    from pipeline.fetch_policy import FetchReason

    table = README.split("| reason | retried | when |", 1)[1].split("\n\n", 1)[0]
    missing = [r.value for r in FetchReason if r.value.startswith("s3_") and f"`{r}`" not in table]
    assert not missing, f"README's s3 reasons table lacks {missing}"
