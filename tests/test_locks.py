"""One writer at a time: a second profile, validation or training of the same thing is refused in one line naming
the first; a lock left by a killed process is taken over; a table version is never overwritten."""

import subprocess
import sys
import time
import warnings

import pytest
from conftest import PROFILE_ARGS, TINY
from test_lut import journal_all_but, profile_records

from instanas.lock import FileLock, LockedError
from lut.store import load_table, save_table


def while_running(args: tuple[str, ...], lock, then, timeout: float = 120):
    """Start ``instanas ARGS`` in a fresh process, call ``then()`` once it holds ``lock`` (the file exists), and
    return the process (still running, or ended) with what ``then`` returned."""
    process = subprocess.Popen([sys.executable, "-m", "instanas", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not lock.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lock.exists(), f"{lock} never appeared: {process.communicate()[1] if process.poll() is not None else ''}"
    return process, then()


def refused_by(result, process) -> bool:
    return (result.returncode == 2 and result.stderr.count("\n") == 1
            and f"being written by pid {process.pid}" in result.stderr)


def test_two_profiles_into_one_store_at_once(profiled, tmp_path, cli):
    """The second is refused before it touches the journal; the first's table is complete, its own, version 1."""
    store = tmp_path / "store"
    journal_all_but(60, load_table(profiled), store)
    (journal,) = store.glob("*/res32.partial.csv")
    command = ("profile", *PROFILE_ARGS, "--rounds", "1", "--out", str(store), "--resume")
    first, second = while_running(command, journal.with_name("res32.partial.csv.lock"), lambda: cli(*command))
    _, errors = first.communicate(timeout=600)
    assert first.returncode == 0, errors
    assert refused_by(second, first), second.stderr
    (path,) = store.glob("*/res32-v*.json")
    assert path.name == "res32-v1.json" and not list(store.glob("*/res32.partial*")), "one table, journal gone"
    assert len(load_table(path).entries) == len(profile_records(load_table(profiled))), "every entry"


def test_two_validations_into_one_folder_at_once(profiled, tmp_path, cli):
    out = tmp_path / "correlate"
    command = ("correlate", "--resolution", "32", "--min-time", "0.01", "--wait-for-speed", "0", "-n", "400",
               "--lut", str(profiled), "--out", str(out))
    first, second = while_running(command, out / "results.csv.lock", lambda: cli(*command, "--resume"))
    first.kill()
    first.wait()
    assert refused_by(second, first), second.stderr


def test_two_trainings_of_one_stage_at_once(tmp_path, cli):
    """The second is refused when it would write the stage; other stages of the folder stay free."""
    run = tmp_path / "run"
    command = ("train", *TINY, "--stage", "pretrain", "--pretrain-epochs", "50", "--out", str(run), "--resume")
    first, (second, other) = while_running(command, run / "pretrain.lock", lambda: (
        cli(*command), cli("train", *TINY, "--stage", "mobilenetv2", "--finetune-epochs", "1", "--out", str(run))))
    first.kill()
    first.wait()
    assert refused_by(second, first), second.stderr
    assert other.returncode == 0, other.stderr


def test_a_lock_whose_process_is_gone_is_taken_over_with_a_warning(tmp_path):
    """A killed process's lock is released by the kernel; its file still names the process, and the next writer says
    it takes it over. A lock that is held refuses even this process's own second attempt."""
    lock = tmp_path / "x.lock"
    holder = subprocess.run([sys.executable, "-c", f"from instanas.lock import FileLock; "
                             f"FileLock({str(lock)!r}, 'x').acquire(); import os; os._exit(0)"], check=True)
    assert holder.returncode == 0 and lock.exists(), "left behind, as by a kill"
    with (pytest.warns(UserWarning, match="taking over the lock of pid .* which has ended"), FileLock(lock, "x"),
          pytest.raises(LockedError, match=r"x is being written by pid \d+")):
        FileLock(lock, "x").acquire()
    assert not lock.exists(), "released and removed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FileLock(lock, "x").acquire().release()  # a lock released cleanly leaves nothing to take over


def test_a_table_version_is_never_overwritten(profiled, tmp_path, monkeypatch):
    """A version another process created after this one looked becomes the version before this one's."""
    table = load_table(profiled)
    saved = {"resolution": 32, "fingerprint": table.meta["fingerprint"], "settings": table.meta["settings"],
             "store": tmp_path}
    first = save_table(profile_records(table), **saved)
    monkeypatch.setattr("lut.store.table_versions", lambda *_: [])  # as if it looked before the first existed
    second = save_table(profile_records(table), **saved)
    assert (first.path.name, second.path.name) == ("res32-v1.json", "res32-v2.json")
    assert load_table(first.path).meta["version"] == 1 and load_table(second.path).meta["version"] == 2
