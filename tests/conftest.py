import os
import subprocess
import sys

import pytest

from profiler.allocator import set_allocator

# In-process timings and fingerprints of the tests see the allocator setting the CLI applies by default.
set_allocator("pinned")


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


PROFILE_ARGS = ("--resolution", "32", "--threads", "1", "--min-time", "0.01")


@pytest.fixture(scope="session")
def profiled(tmp_path_factory, cli):
    """One real profile at 32 px (two quick rounds, one thread) through the CLI, as a user runs it: its LUT file."""
    store = tmp_path_factory.mktemp("store")
    result = cli("profile", *PROFILE_ARGS, "--rounds", "2", "--out", str(store))
    assert result.returncode == 0, result.stderr
    (path,) = store.glob("*/res32-v1.json")
    return path


# A tiny real training setup: 64 training and 40 validation digits, small batches, one or two epochs per stage.
TINY = ("--dataset", "digits", "--workers", "0", "--limit-train", "64", "--limit-val", "40",
        "--pretrain-batch", "16", "--search-batch", "16", "--finetune-batch", "16")
# U_end 0.9 × MobileNetV2: at one thread the smallest architecture costs more than half of MobileNetV2 on some CPUs
EPOCHS = ("--pretrain-epochs", "2", "--search-epochs", "2", "--finetune-epochs", "1", "--upper-end", "0.9")


@pytest.fixture(scope="session")
def trained_run(profiled, tmp_path_factory, cli):
    """All of ``instanas train`` (pretrain, search, finetune, mobilenetv2) on the tiny setup: the run folder."""
    run = tmp_path_factory.mktemp("train") / "run"
    trained = cli("train", *TINY, *EPOCHS, "--out", str(run), "--lut", str(profiled))
    assert trained.returncode == 0, trained.stderr
    return run
