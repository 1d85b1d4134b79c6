import contextlib
import fcntl
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from profiler.allocator import set_allocator
from profiler.fingerprint import fingerprint_id, machine_fingerprint

# In-process timings and fingerprints of the tests see the allocator setting the CLI applies by default.
set_allocator("pinned")

# `make test` runs the tests on two pytest-xdist workers, one core each (the tests marked `timing` run after them,
# alone, with the machine's threads): a second thread per worker, or per command a worker starts, would only
# oversubscribe the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``instanas`` entry point in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "instanas", *args], capture_output=True, text=True, timeout=timeout)


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def call_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``instanas ARGS`` through its entry point ``main`` in this process: what a user sees on stdout and stderr
    and the exit code, without a new interpreter importing torch for every call. The process state a command may
    change (torch's thread count, warnings) is restored after it, and warnings print as in a fresh process."""
    from instanas.cli import main

    stdout, stderr, threads = io.StringIO(), io.StringIO(), torch.get_num_threads()
    with warnings.catch_warnings(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        warnings.resetwarnings()  # Python's own filters of a fresh process, and no warning "already shown"
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = _print_warning  # pytest records warnings; a user's terminal shows them
        returncode = main(list(args))
    torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["instanas", *args], returncode, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def cli():
    return call_cli


PROFILE_ARGS = ("--resolution", "32", "--threads", "1", "--min-time", "0.01")


def kill_when(args: tuple[str, ...], ready, timeout: float = 120) -> None:
    """Run ``instanas ARGS`` in a fresh process and SIGKILL it (no chance to clean up) as soon as ``ready()`` holds,
    or after ``timeout`` seconds: what a crash or an out-of-memory kill leaves behind."""
    process = subprocess.Popen([sys.executable, "-m", "instanas", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@dataclass(frozen=True)
class KilledProfile:
    """The session's one real profile: its LUT file, and the journal rows it had finished when it was killed."""

    path: Path
    kept: pd.DataFrame


@contextlib.contextmanager
def built_once(tmp_path_factory, name: str):
    """A folder for a read-only session fixture, and whether it is built already: under pytest-xdist, one per run,
    shared by the workers (the first to need it builds it while the others wait on its lock, then reuse it), so
    that `make test`'s two workers do not both pay for it; without xdist, this session's own. With
    ``INSTANAS_TEST_FIXTURES`` set, that folder's: `make test` points both of its pytest runs at one, so that the
    tests marked `timing` reuse the profile the first run made (13 s of re-profiling)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    shared = os.environ.get("INSTANAS_TEST_FIXTURES")
    folder = (Path(shared) if shared else base.parent if worker else base) / name  # a worker's base lies in the run's
    folder.mkdir(exist_ok=True)
    done = folder / ".built"
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder, done.exists()
        done.touch()  # not reached when building failed: the next worker tries again


@pytest.fixture(scope="session")
def killed_profile(tmp_path_factory, cli) -> KilledProfile:
    """One real profile at 32 px (one quick round, one thread), as a user runs it: started in a fresh process,
    killed mid-way (SIGKILL, no chance to clean up) once 40 measurements are journaled, then resumed."""
    with built_once(tmp_path_factory, "killed-profile") as (store, built):
        kept = store / "kept.csv"  # the journal as the kill left it
        if not built:
            command = ("profile", *PROFILE_ARGS, "--rounds", "1", "--out", str(store))
            journal = store / fingerprint_id(machine_fingerprint(1)) / "res32.partial.csv"
            kill_when(command, lambda: journal.exists() and len(journal.read_text().splitlines()) > 40)
            shutil.copyfile(journal, kept)
            resumed = cli(*command, "--resume")
            assert resumed.returncode == 0, resumed.stderr
            assert "taking over the lock of pid" in resumed.stderr, \
                "the killed profile's lock file is taken over, with a word"
        (path,) = store.glob("*/res32-v1.json")
    return KilledProfile(path, pd.read_csv(kept).dropna(subset=["calls_per_run"]))  # a row the kill cut is incomplete


@pytest.fixture(scope="session")
def profiled(killed_profile) -> Path:
    return killed_profile.path


# A tiny real training setup: 18 cluttered training digits (2 held out, 16 trained on) and 16 validation ones,
# batches of 8 (two steps an epoch), one or two epochs per stage. A step of the whole meta-graph costs about its
# batch: this is what the training tests pay for. Cluttered digits record each image's difficulty, which evaluate
# and compare report per clutter bucket.
LIMIT_TRAIN, LIMIT_VAL, BATCH = 18, 16, "8"
TINY = ("--dataset", "cluttered-digits", "--workers", "0", "--limit-train", str(LIMIT_TRAIN),
        "--limit-val", str(LIMIT_VAL),
        "--pretrain-batch", BATCH, "--search-batch", BATCH, "--finetune-batch", BATCH)
# U_end 0.9 × MobileNetV2: at one thread the smallest architecture costs more than half of MobileNetV2 on some CPUs
EPOCHS = ("--pretrain-epochs", "1", "--search-epochs", "2", "--finetune-epochs", "1", "--upper-end", "0.9")


@pytest.fixture(scope="session")
def trained_run(profiled, tmp_path_factory, cli):
    """All of ``instanas train`` (pretrain, search, finetune, mobilenetv2) on the tiny setup: the run folder, a
    worker's own copy (tests evaluate and train into it) of the one run the test session trains."""
    with built_once(tmp_path_factory, "trained-run") as (folder, built):
        if not built:
            shutil.rmtree(folder / "run", ignore_errors=True)  # what a failed build left
            trained = cli("train", *TINY, *EPOCHS, "--out", str(folder / "run"), "--lut", str(profiled))
            assert trained.returncode == 0, trained.stderr
    run = tmp_path_factory.mktemp("train") / "run"
    shutil.copytree(folder / "run", run)
    return run
