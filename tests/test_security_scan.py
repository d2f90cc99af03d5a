"""scripts/security's static scan: bandit finds nothing unexplained in lg_deploy (offline part;
pip-audit needs its vulnerability service and runs from scripts/security, not from pytest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BANDIT = [sys.executable, "-m", "bandit", "-q", "--skip", "B101"]  # as scripts/security runs it


@pytest.mark.req("SEC-SCANNERS")
def test_scripts_security_bandit_reports_no_finding() -> None:
    """`scripts/security bandit` exits 0: every finding is fixed or carries a `# nosec` reason."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "security"), "bandit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.req("SEC-SCANNERS")
def test_bandit_as_configured_still_flags_a_planted_weakness(tmp_path: Path) -> None:
    """The same bandit options flag shell=True and SQL built by formatting (the scan can fail)."""
    planted = tmp_path / "planted.py"
    planted.write_text(
        "import subprocess\n"
        "def run(cmd, conn, name):\n"
        "    subprocess.call(cmd, shell=True)\n"
        "    conn.execute(f\"SELECT * FROM lg_deploy.executions WHERE graph_id = '{name}'\")\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [*BANDIT, "-r", str(tmp_path)], capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 1
    assert "B602" in done.stdout
    assert "B608" in done.stdout
