"""The ``instanas`` command as a user runs it: real output, one-line errors. The tests call its entry point in their
own process (``conftest.call_cli``); one runs the installed command in a fresh process."""

import json

import pytest

from instanas.atomic import atomic_write
from instanas.space import parse_architecture

SMALLEST = "00001-00001-00000-00001-00000-00000-00001-00000-00000-00000-00001-00000-00000-00001-00000-00000-00001"


def test_the_command_runs_in_a_fresh_process_as_installed():
    from conftest import run_cli

    result = run_cli("space", "--resolution", "32", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["resolution"] == 32, result.stderr
    refused = run_cli("measure", "-r", "32", "--arch", "0101")
    assert refused.returncode == 2 and refused.stdout == "" and refused.stderr.startswith("error: ")
    assert refused.stderr.count("\n") == 1 and "has 1 cell tokens" in refused.stderr


def test_space_json(cli):
    result = cli("space", "--resolution", "224", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["resolution"] == 224
    assert payload["architectures"] == 31**7 * 32**10
    assert len(payload["cells"]) == 17
    assert set(payload["cells"][0]) == {"index", "input_hw", "in_channels", "out_channels", "stride", "required"}
    assert payload["cells"][0]["input_hw"] == 112


def test_space_table(cli):
    result = cli("space", "-r", "32")
    assert result.returncode == 0
    assert "30,976,449,664,571,962,518,667,264" in result.stdout


def test_sample_prints_valid_seeded_architectures(cli):
    first = cli("sample", "-r", "64", "-n", "5", "--seed", "3", "--keep", "0.4")
    again = cli("sample", "-r", "64", "-n", "5", "--seed", "3", "--keep", "0.4")
    assert first.returncode == 0 and first.stdout == again.stdout
    lines = first.stdout.split()
    assert len(lines) == 5
    for line in lines:
        parse_architecture(line)


def test_measure_json(cli):
    result = cli("measure", "-r", "32", "--arch", SMALLEST, "--threads", "1", "--min-time", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["arch"] == SMALLEST and payload["resolution"] == 32 and payload["threads"] == 1
    assert payload["median_ms"] > 0 and payload["iqr_ms"] >= 0 and payload["runs"] >= 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["space", "--resolution", "48"], "resolution 48 is not supported"),
        (["space", "--resolution", "abc"], "--resolution"),
        (["space"], "Missing option"),
        (["sample", "-r", "32", "--keep", "0"], "keep probabilities"),
        (["measure", "-r", "32", "--arch", "0101"], "has 1 cell tokens"),
        (["measure", "-r", "32", "--arch", SMALLEST.replace("00001", "00000", 1)], "cell 0 needs at least one"),
        (["measure", "-r", "32", "--arch", SMALLEST, "--threads", "0"], "--threads"),
        (["correlate", "-r", "32", "-n", "3", "--wait-for-speed", "-1"], "--wait-for-speed"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]


@pytest.mark.parametrize("command", ["correlate", "profile", "calibrate"])
def test_an_output_folder_that_cannot_be_made_is_one_line_naming_it(command, profiled, tmp_path, cli):
    """--out below a regular file (a folder that cannot exist, as on a read-only or full disk): one line naming the
    path, exit 2, and nothing written, before any timing starts."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "out"
    options = {"correlate": ("-n", "3", "--wait-for-speed", "0", "--lut", str(profiled)), "profile": ("--rounds", "1"),
               "calibrate": ("-n", "10", "--wait-for-speed", "0", "--lut", str(profiled))}[command]
    result = cli(command, "-r", "32", *options, "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}"), result.stderr
    assert blocker.read_text() == "" and list(tmp_path.iterdir()) == [blocker]


def test_a_write_that_fails_names_the_file_and_leaves_no_temporary(tmp_path):
    """atomic_write's error names the file asked for, not the temporary beside it, and the temporary is removed."""
    target = tmp_path / "table.json"
    target.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(IsADirectoryError) as raised:
        atomic_write(target, "{}")
    assert raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == [target] and not any(target.iterdir())


@pytest.mark.parametrize("command", ["space", "sample", "measure"])
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "--resolution" in result.stdout


def test_measure_paired_converts_the_ratio_with_the_luts_anchor(profiled, cli):
    from lut.store import load_table

    table = load_table(profiled)
    result = cli("measure", "-r", "32", "--arch", SMALLEST, "--min-time", "0.05", "--paired", "--lut", str(profiled),
                 "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["threads"] == table.threads and payload["anchor_ms"] == table.anchor_ms
    assert payload["paired_ms"] == pytest.approx(payload["ratio"] * table.anchor_ms)
    assert payload["estimate_plain_ms"] == pytest.approx(table.estimate(parse_architecture(SMALLEST)))
    assert payload["median_ms"] > 0 and payload["reference_ms"] > 0 and payload["runs"] >= 7
    text = cli("measure", "-r", "32", "--arch", SMALLEST, "--min-time", "0.05", "--paired", "--lut", str(profiled))
    assert text.returncode == 0 and "paired:" in text.stdout and "median" in text.stdout
    raw = cli("measure", "-r", "32", "--arch", SMALLEST, "--threads", "1", "--min-time", "0.05")
    assert raw.returncode == 0 and "paired" not in raw.stdout


def test_measure_paired_refuses_a_lut_of_other_cells(profiled, cli):
    result = cli("measure", "-r", "32", "--arch", SMALLEST, "--paired", "--lut", str(profiled), "--cell-merge", "sum")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--cell-merge sum" in result.stderr


def test_every_setting_has_an_option_whose_default_is_the_settings_own():
    """One source of each default: ``train`` has an option for every TrainConfig field, ``compare`` one for every
    field of the baselines' settings and of CompareOptions that a user sets, each defaulting to the dataclass's."""
    import dataclasses

    from typer.main import get_command

    from instanas.baselines.settings import BlockDropSettings, CompareOptions, ConvNetAIGSettings
    from instanas.cli import app
    from instanas.training.config import TrainConfig

    commands = get_command(app).commands
    train, compare = ({param.name: param.default for param in commands[name].params} for name in ("train", "compare"))
    for field in dataclasses.fields(TrainConfig):
        assert train[field.name] == field.default, field.name
    for prefix, kind in (("blockdrop_", BlockDropSettings), ("aig_", ConvNetAIGSettings)):
        for field in dataclasses.fields(kind):
            assert compare[prefix + field.name] == field.default, prefix + field.name
    options = {"oneshot_samples": "oneshot_samples", "retrain": "retrain",
               "oneshot_retrain_points": "oneshot_retrain_points", "retrain_snapshots": "retrain_snapshots",
               "measure": "measure", "min_run_time": "min_time", "device": "device", "tensorboard": "tensorboard",
               "instanas_from_search": "instanas_from_search", "instanas_search_lr": "instanas_search_lr"}
    for field, option in options.items():
        assert compare[option] == getattr(CompareOptions, field), field
    assert compare["widths"] == ",".join(f"{width:g}" for width in CompareOptions().widths)
