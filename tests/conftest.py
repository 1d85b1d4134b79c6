import os
import subprocess
import sys

import pytest


def run_cli(*args: str, cwd=None, env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``instanas`` entry point in a fresh process, as a user would."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "instanas", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def cli():
    return run_cli
