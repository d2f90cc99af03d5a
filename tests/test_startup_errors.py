"""A configuration error when `serve` starts is one readable line, like `worker`'s, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.servers import free_port

UNLOADABLE = {"broken": "no_such_module_for_test:graph"}


@pytest.mark.req("OPS-STARTUP-ERROR")
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unloadable_graph_stops_the_start_with_one_line(command: str, tmp_path: Path) -> None:
    """Exit not 0; the output names the graph spec and the missing module; no traceback."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LG_DEPLOY_")},
        "LG_DEPLOY_BACKEND": "memory",
        "LG_DEPLOY_GRAPHS": json.dumps(UNLOADABLE),
        "LG_DEPLOY_HOST": "127.0.0.1",
        "LG_DEPLOY_PORT": str(free_port()),
    }
    done = subprocess.run(
        [*LG_DEPLOY_COMMAND, command],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "lg-deploy: graph spec 'no_such_module_for_test:graph'" in output
    assert "No module named 'no_such_module_for_test'" in output
    assert "Traceback" not in output
