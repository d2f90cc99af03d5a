"""Running a script of tests/js with Node.js against a server: the official JS SDK's view."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JS_FOLDER = Path(__file__).resolve().parent.parent / "js"
JS_SCRIPT_SECONDS = 120


def run_js(script: str, url: str, api_key: str) -> subprocess.CompletedProcess[str]:
    """Run tests/js/`script` with LG_URL and LG_API_KEY set; its exit status and output."""
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for the JS SDK tests (scripts/install-js-sdk)"
    assert (JS_FOLDER / "node_modules" / "@langchain" / "langgraph-sdk").is_dir(), (
        "the JS SDK is not installed: run scripts/install-js-sdk"
    )
    return subprocess.run(
        [node, str(JS_FOLDER / script)],
        cwd=JS_FOLDER,
        env={"PATH": "/usr/bin:/bin", "LG_URL": url, "LG_API_KEY": api_key},
        capture_output=True,
        text=True,
        timeout=JS_SCRIPT_SECONDS,
    )
