"""The deep run (`scripts/test --deep`): the same tests with more seeds and generated cases.

The default run, which CI runs, proves every behaviour once; `--deep` runs the searching tests
longer (every chaos seed of CI_SEEDS, more schemathesis and hypothesis examples), to look for
what the default sizes may miss.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """--deep: more chaos seeds and more generated cases."""
    parser.addoption(
        "--deep",
        action="store_true",
        default=False,
        help="the deep run: every chaos seed, more schemathesis and hypothesis examples",
    )


def is_deep(config: pytest.Config) -> bool:
    """True in the deep run."""
    return bool(config.getoption("deep"))


@pytest.fixture(scope="session")
def deep(request: pytest.FixtureRequest) -> bool:
    """True in the deep run (`--deep`)."""
    return is_deep(request.config)
