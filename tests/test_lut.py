"""Latency lookup tables: real profiling at 32 px into files, versioning, validation, fingerprints, estimation."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PROFILE_ARGS

from instanas.errors import ArchitectureError, ForeignLUTError, LUTError
from instanas.space import (
    MODULE_NAMES,
    NUM_CELLS,
    entry_keys,
    format_architecture,
    full_architecture,
    merge_key,
    mobilenetv2_architecture,
    module_key,
    profiled_keys,
    sample_architectures,
    smallest_architecture,
)
from lut.profile import ProfileRun
from lut.store import PROFILE_COLUMNS, check_fingerprint, list_tables, load_table, save_table, table_versions
from lut.table import LatencyTable, content_hash
from profiler.fingerprint import fingerprint_id, machine_fingerprint
from profiler.space_profile import profile_space
from profiler.speed_gate import SpeedGate


def rewrite(source: Path, target: Path, change) -> Path:
    """Copy a table with ``change`` applied to its JSON, re-hashed so only the change differs."""
    payload = json.loads(source.read_text())
    change(payload)
    payload["content_hash"] = content_hash(payload)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload))
    return target


def profile_records(table: LatencyTable) -> pd.DataFrame:
    """A table's entries as one round of profiling records (the journal's columns), at its anchor's speed."""
    anchor = table.anchor_ms
    return table.entries.drop(columns="round_medians_ms").assign(
        round=0,
        ratio=table.entries["median_ms"] / anchor,
        ratio_iqr=table.entries["iqr_ms"] / anchor,
        reference_ms=anchor,
        median_ms=table.entries["raw_median_ms"],
        calls_per_run=1,
    )[PROFILE_COLUMNS]


def test_profile_writes_a_complete_versioned_table(profiled):
    payload = json.loads(profiled.read_text())
    assert payload["schema_version"] == 1 and payload["resolution"] == 32 and payload["version"] == 1
    assert payload["settings"]["threads"] == 1 and payload["settings"]["rounds"] == 1
    assert payload["fingerprint"]["id"] == fingerprint_id(machine_fingerprint(1)) == profiled.parent.name
    assert payload["content_hash"].startswith("sha256:")
    reference = payload["reference"]
    assert reference["arch"] == format_architecture(mobilenetv2_architecture()) and reference["anchor_ms"] > 0
    assert sorted(entry["key"] for entry in payload["entries"]) == sorted(profiled_keys())
    assert len(entry_keys()) == 2 + NUM_CELLS * (5 + 4)
    for entry in payload["entries"]:
        assert len(entry["round_medians_ms"]) == 1
        assert entry["median_ms"] > 0 and entry["iqr_ms"] >= 0 and entry["runs"] >= 7
    assert not list(profiled.parent.glob("*.partial.*")), "the journal is removed once the table is written"


def test_table_round_trips(profiled):
    table = load_table(profiled)
    assert table.to_dict() == json.loads(profiled.read_text())
    assert table.resolution == 32 and table.version == 1 and table.threads == 1


@pytest.mark.timing
def test_bigger_modules_cost_more(profiled):
    """Sanity of real measurements, as ratios within one table: mb5e6 does strictly more work than mb3e3."""
    table = load_table(profiled)
    column_totals = table.module_ms.sum(axis=0)
    assert column_totals[MODULE_NAMES.index("mb5e6")] > column_totals[MODULE_NAMES.index("mb3e3")]
    assert table.estimate(full_architecture()) > 3 * table.estimate(smallest_architecture())


def test_new_profile_adds_a_version_and_keeps_the_old(profiled, tmp_path):
    store = tmp_path / "store"
    first = load_table(profiled)
    records = profile_records(first)
    meta = first.meta
    v1 = save_table(records, resolution=32, fingerprint=meta["fingerprint"], settings=meta["settings"], store=store)
    v1_bytes = v1.path.read_bytes()
    v2 = save_table(records, resolution=32, fingerprint=meta["fingerprint"], settings=meta["settings"], store=store)
    assert (v1.version, v2.version) == (1, 2)
    assert [version for version, _ in table_versions(store, first.fingerprint_id, 32)] == [1, 2]
    assert v1.path.read_bytes() == v1_bytes
    np.testing.assert_allclose(v2.module_ms, first.module_ms)  # same ratios and anchor give the same table
    listed = list_tables(store)
    assert listed["version"].tolist() == [1, 2] and (listed["problem"] == "").all()


def test_vectorised_estimate_equals_per_architecture_sum(profiled):
    table = load_table(profiled)
    medians = dict(zip(table.entries["key"], table.entries["median_ms"]))
    archs = sample_architectures(300, keep=np.linspace(0.05, 1.0, 300), seed=4)
    batch = table.estimate(archs)
    for arch, estimate in zip(archs, batch):
        expected = medians["stem"] + medians["head"]
        for cell, row in enumerate(arch):
            expected += sum(medians[module_key(cell, MODULE_NAMES[m])] for m in np.flatnonzero(row))
            if row.sum() >= 2:
                expected += medians[merge_key(cell, int(row.sum()))]
        assert estimate == pytest.approx(expected, rel=1e-12)
        assert table.estimate(arch) == pytest.approx(estimate, rel=1e-12)
    assert table.estimate(sample_architectures(10_000, seed=0)).shape == (10_000,)


def test_estimate_rejects_invalid_architectures(profiled):
    table = load_table(profiled)
    archs = sample_architectures(5, seed=1)
    archs[3, 6] = False
    with pytest.raises(ArchitectureError, match="architecture 3: cell 6"):
        table.estimate(archs)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: text.replace('"median_ms": ', '"median_ms": 1', 1), "content hash does not match"),
        (lambda text: "[]", "not an instanas latency table"),
    ],
)
def test_corrupt_files_are_refused_naming_the_file(profiled, tmp_path, damage, message):
    bad = tmp_path / "bad.json"
    bad.write_text(damage(profiled.read_text()))
    with pytest.raises(LUTError, match=message) as caught:
        load_table(bad)
    assert str(bad) in str(caught.value)


def test_other_schema_and_missing_entries_are_refused(profiled, tmp_path):
    newer = rewrite(profiled, tmp_path / "newer.json", lambda payload: payload.update(schema_version=99))
    with pytest.raises(LUTError, match="schema version 99"):
        load_table(newer)
    partial = rewrite(profiled, tmp_path / "partial.json", lambda payload: payload["entries"].pop())
    with pytest.raises(LUTError, match="entries missing"):
        load_table(partial)
    with pytest.raises(LUTError, match="no such LUT file"):
        load_table(tmp_path / "absent.json")


def test_foreign_fingerprint_is_refused_unless_allowed(profiled, tmp_path, cli):
    def foreign(payload):
        payload["fingerprint"]["id"] = "0123456789ab"

    other = rewrite(profiled, tmp_path / "foreign.json", foreign)
    table = load_table(other)
    with pytest.raises(ForeignLUTError, match="another machine"):
        check_fingerprint(table, fingerprint_id(machine_fingerprint(1)), allow_foreign=False)

    arch = format_architecture(smallest_architecture())
    refused = cli("estimate", "-r", "32", "--arch", arch, "--lut", str(other))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--allow-foreign-lut" in refused.stderr and str(other) in refused.stderr
    allowed = cli("estimate", "-r", "32", "--arch", arch, "--lut", str(other), "--allow-foreign-lut", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr.startswith("warning: ") and allowed.stderr.count("\n") == 1
    assert json.loads(allowed.stdout)["estimate_ms"] == pytest.approx(table.estimate(smallest_architecture()))


def test_estimate_cli_finds_this_machines_newest_table(profiled, cli):
    arch = format_architecture(full_architecture())
    result = cli("estimate", "-r", "32", "--arch", arch, "--threads", "1", "--out", str(profiled.parents[1]), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["lut"] == str(profiled) and payload["lut_version"] == 1
    assert payload["estimate_ms"] == pytest.approx(load_table(profiled).estimate(full_architecture()))


def test_diff_ranks_the_largest_change_first(profiled, tmp_path, cli):
    def slow_cell(payload):
        for entry in payload["entries"]:
            if entry["key"] == "cell05.mb5e6":
                entry["median_ms"] *= 3

    slower = rewrite(profiled, tmp_path / "slower.json", slow_cell)
    result = cli("lut", "diff", str(profiled), str(slower), "--json", "--top", "3")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["worst_entry"] == "cell05.mb5e6"
    assert payload["worst_change_pct"] == pytest.approx(200)
    assert payload["median_abs_change_pct"] == 0 and len(payload["changes"]) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["lut", "show", "missing.json"], "missing.json: no such LUT file"),
        (["profile", "--resolution", "48"], "resolution 48 is not supported"),
        (["estimate", "-r", "64", "--arch", format_architecture(full_architecture()), "--lut", "LUT"], "not 64 px"),
        (["estimate", "-r", "32", "--arch", format_architecture(full_architecture()), "--out", "empty"], "no LUT"),
        (["profile", "-r", "64", "--speed-of", "LUT"], "a 32 px table sets the speed of 32 px profiles only"),
        (["profile", "-r", "32", "--speed-of", "missing.json"], "missing.json: no such LUT file"),
    ],
)
def test_cli_errors_are_one_line(profiled, cli, tmp_path, args, message):
    args = [str(profiled) if arg == "LUT" else str(tmp_path / arg) if arg in {"missing.json", "empty"} else arg
            for arg in args]
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_killed_profile_resumes_without_losing_or_repeating(killed_profile):
    """The session's profile was killed mid-way and resumed: every measurement is in its table once."""
    kept = killed_profile.kept
    assert 40 <= len(kept) < len(profiled_keys()), "killed before the end"
    table = load_table(killed_profile.path)
    assert sorted(table.entries["key"]) == sorted(profiled_keys())
    assert (table.entries["round_medians_ms"].map(len) == 1).all(), "no entry measured twice"
    rounds = dict(zip(table.entries["key"], table.entries["round_medians_ms"]))
    for row in kept.itertuples():
        assert row.ratio * table.anchor_ms == pytest.approx(rounds[row.key][row.round], rel=1e-12), \
            "finished measurements are kept, not redone"
    assert not list(killed_profile.path.parent.glob("*.partial.*"))


def test_resume_with_other_settings_is_refused(tmp_path, cli):
    store = tmp_path / "store"
    folder = store / fingerprint_id(machine_fingerprint(1))
    folder.mkdir(parents=True)
    (folder / "res32.partial.json").write_text(json.dumps({"resolution": 32, "rounds": 7}))
    (folder / "res32.partial.csv").write_text("key\n")
    result = cli("profile", *PROFILE_ARGS, "--out", str(store), "--resume")
    assert result.returncode == 2 and "other settings" in result.stderr


def test_fingerprint_fields_and_id():
    fields = machine_fingerprint(2)
    for name in ("cpu_model", "physical_cores", "logical_cores", "isa_flags", "threads", "torch_version", "onednn"):
        assert name in fields
    assert fingerprint_id(fields) == fingerprint_id(machine_fingerprint(2))
    assert fingerprint_id(fields) != fingerprint_id(machine_fingerprint(1))
    assert fingerprint_id(fields | {"os": "elsewhere"}) == fingerprint_id(fields), "OS text does not change latency"
    assert fields["malloc"] == "pinned", "the tests run pinned, as the CLI does"
    assert fingerprint_id(fields | {"malloc": "system"}) != fingerprint_id(fields), "the allocator changes latency"
    assert len(fingerprint_id(fields)) == 12


def test_a_table_profiled_under_another_allocator_is_foreign(profiled, cli):
    """In a fresh process: glibc's thresholds, once pinned in a process, cannot be unpinned."""
    from conftest import run_cli

    arch = format_architecture(smallest_architecture())
    refused = run_cli("--malloc", "system", "estimate", "-r", "32", "--arch", arch, "--lut", str(profiled))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--allow-foreign-lut" in refused.stderr
    unknown = cli("--malloc", "jemalloc", "space", "-r", "32")
    assert unknown.returncode == 2 and unknown.stderr == "error: --malloc 'jemalloc': use one of pinned, system\n"


def test_a_table_prices_only_networks_whose_cells_merge_like_the_profiled_ones(profiled, tmp_path, cli):
    """The default profile times mean-merging cells; a table of summing cells is refused for them, and back."""
    from lut.store import resolve_table

    assert json.loads(profiled.read_text())["settings"]["cell_merge"] == "mean"
    store = tmp_path / "store"
    summed = rewrite(profiled, store / profiled.parent.name / "res32-v1.json",
                     lambda payload: payload["settings"].update(cell_merge="sum"))
    mean = rewrite(profiled, store / profiled.parent.name / "res32-v2.json", lambda payload: None)
    assert load_table(summed).cell_merge == "sum" and load_table(mean).cell_merge == "mean"
    with pytest.raises(LUTError, match="cells that sum their modules.*--cell-merge mean"):
        resolve_table(32, path=summed, store=store, threads=1, allow_foreign=False, merge="mean")
    newest_sum = resolve_table(32, path=None, store=store, threads=1, allow_foreign=False, merge="sum")
    assert newest_sum.path == summed, "the newest table of the asked merge, not the newest of all"
    refused = cli("train", "--dataset", "digits", "--stage", "search", "--cell-merge", "sum", "--lut", str(mean),
                  "--out", str(tmp_path / "run"))
    assert refused.returncode == 2 and "profile with --cell-merge sum" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_diff_splits_the_estimates_move_into_anchor_and_ratios(profiled, tmp_path, cli):
    """A profile on a machine 10 % slower scales every entry and the anchor alike: estimates move, ratios do not."""

    def slower_machine(payload):
        payload["reference"]["anchor_ms"] *= 1.1
        for entry in payload["entries"]:
            entry["median_ms"] *= 1.1

    slower = rewrite(profiled, tmp_path / "slower.json", slower_machine)
    result = cli("lut", "diff", str(profiled), str(slower), "--json", "--architectures", "500")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["architectures"] == 500
    assert payload["estimate_change_pct_median"] == pytest.approx(10)
    assert payload["anchor_change_pct"] == pytest.approx(10)
    assert payload["ratio_abs_change_pct_median"] == pytest.approx(0, abs=1e-9)
    assert payload["beyond_noise_share"] is None, "one profiling round: no noise to tell drift from"
    text = cli("lut", "diff", str(profiled), str(slower), "--architectures", "500")
    assert text.returncode == 0 and "500 random architectures: estimates moved +10.00 %" in text.stdout
    assert "one profiling round" in text.stdout


@pytest.mark.timing
def test_a_profile_at_an_earlier_tables_speed_times_off_speed_entries_again(profiled):
    """A gate whose anchor says the machine ran three times faster: the first measurements are set aside, taken
    again at the end of their round, and each entry is still yielded once per round."""
    gate = SpeedGate(anchor_ms=load_table(profiled).anchor_ms / 3, wait_s=1.0)
    keys = sorted(profiled_keys())
    done = {(key, 0) for key in keys[12:]}  # a resumed profile with 12 entries left: enough to see the gate work
    measured = [(m.task.key, m.round)
                for m in profile_space(32, threads=1, min_run_time=0.01, rounds=1, gate=gate, skip=done)]
    assert sorted(key for key, _ in measured) == keys[:12], "every entry left once"
    assert gate.set_aside >= 1 and gate.waited_s >= 1.0


def journal_all_but(left: int, earlier: LatencyTable, store: Path, rounds: int = 1, **gate) -> list[str]:
    """Journal an interrupted quick profile (the CLI's ``PROFILE_ARGS``) with ``left`` entries to go in each round,
    the rest taken from an earlier table; return the keys left."""
    run = ProfileRun(32, store=store, threads=1, min_run_time=0.01, rounds=rounds, seed=0, merge="mean", resume=False,
                     **gate)
    records = profile_records(earlier)
    for round_index in range(rounds):
        for record in records.iloc[left:].assign(round=round_index).to_dict("records"):
            run.journal.append(record)
    run.close()
    return list(records["key"].iloc[:left])


def test_profile_speed_of_records_the_anchor_it_was_held_to(profiled, tmp_path, cli):
    """A profile held to an earlier table's speed, resumed with 12 entries left, records the anchor it was held to
    and reports its gate."""
    store, earlier = tmp_path / "store", load_table(profiled)
    journal_all_but(12, earlier, store, gate=SpeedGate(earlier.anchor_ms, 3.0), speed_of=profiled)
    result = cli("profile", *PROFILE_ARGS, "--rounds", "1", "--out", str(store), "--speed-of", str(profiled),
                 "--wait-for-speed", "0.05", "--resume")
    assert result.returncode == 0, result.stderr
    table = load_table(next(store.glob("*/res32-v1.json")))
    speed_of = table.meta["settings"]["speed_of"]
    assert speed_of["anchor_ms"] == earlier.anchor_ms and speed_of["lut"].endswith(profiled.name)
    assert sorted(table.entries["key"]) == sorted(profiled_keys())
    assert "speed gate" in result.stdout


def test_rounds_are_measured_apart_and_merged_by_their_median(profiled, tmp_path, cli):
    """A two-round profile resumed with six entries left in each round: those are timed once per round, and every
    entry's latency is the median of its rounds' ratios at the table's anchor."""
    store, earlier = tmp_path / "store", load_table(profiled)
    left = journal_all_but(6, earlier, store, rounds=2)
    result = cli("profile", *PROFILE_ARGS, "--rounds", "2", "--out", str(store), "--resume")
    assert result.returncode == 0, result.stderr
    table = load_table(next(store.glob("*/res32-v1.json")))
    assert table.meta["settings"]["rounds"] == 2
    entries = table.entries.set_index("key")
    assert (entries["round_medians_ms"].map(len) == 2).all()
    for key in left:
        entry = entries.loc[key]
        assert entry["runs"] >= 14, "seven timed blocks in each round"
        assert entry["median_ms"] == pytest.approx(np.median(entry["round_medians_ms"]), rel=1e-12)


def test_diff_counts_drift_only_beyond_the_tables_own_noise(profiled, tmp_path, cli):
    """Two profiles of one machine, three rounds each with 4 % noise per entry and round: their estimates differ,
    but hardly beyond their noise. Entries of five cells 30 % slower: most architectures move beyond it."""

    def rounds(seed: int, slower_cells=()):
        rng = np.random.default_rng(seed)

        def change(payload):
            for entry in payload["entries"]:
                true = entry["median_ms"] * (1.3 if entry.get("cell") in slower_cells else 1.0)
                entry["round_medians_ms"] = [float(v) for v in true * np.exp(rng.normal(0, 0.04, 3))]
                entry["median_ms"] = float(np.median(entry["round_medians_ms"]))

        return change

    before = rewrite(profiled, tmp_path / "before.json", rounds(1))
    again = rewrite(profiled, tmp_path / "again.json", rounds(2))
    drifted = rewrite(profiled, tmp_path / "drifted.json", rounds(3, slower_cells=range(5)))
    same = json.loads(cli("lut", "diff", str(before), str(again), "--json", "--architectures", "500").stdout)
    moved = json.loads(cli("lut", "diff", str(before), str(drifted), "--json", "--architectures", "500").stdout)
    assert same["noise_pct_median"] > 0 and same["ratio_abs_change_pct_median"] > 0
    assert same["beyond_noise_share"] < 0.15 and same["ratio_drift_rms_pct"] < 0.5
    assert moved["beyond_noise_share"] > 0.5 and moved["ratio_drift_rms_pct"] > 2
    text = cli("lut", "diff", str(before), str(again), "--architectures", "500")
    assert text.returncode == 0 and "beyond the tables' own noise" in text.stdout
