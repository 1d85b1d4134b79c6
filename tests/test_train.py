"""The controller, the reward and the three training stages, end to end on real handwritten digits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import BATCH, LIMIT_VAL, TINY, kill_when
from torch import nn

from instanas.cluttered import PROTOCOLS
from instanas.controller import Controller, deterministic_policy, encouraged, saved_controller
from instanas.data import Cutout, load_dataset
from instanas.errors import DatasetError, LUTError
from instanas.metagraph import MetaGraph
from instanas.reward import LatencyBounds, instance_reward, latency_reward
from instanas.space import REQUIRED_CELLS, mobilenetv2_architecture, parse_architecture, smallest_architecture
from instanas.training.checkpoints import load_checkpoint, read_run, record_run, save_checkpoint
from instanas.training.config import TrainConfig
from instanas.training.loop import Trainer
from instanas.training.runtime import Workers
from instanas.training.stages import MobileNetV2Baseline, Pretrain, drop_path_rate
from lut.store import load_table


@pytest.mark.parametrize("resolution", [32, 64, 224])
def test_controller_gives_probabilities_per_cell_and_module(resolution):
    torch.manual_seed(0)
    probabilities = Controller(resolution).eval()(torch.randn(3, 3, resolution, resolution))
    assert probabilities.shape == (3, 17, 5)
    assert ((probabilities > 0) & (probabilities < 1)).all()


@pytest.mark.parametrize("resolution, widths, pooled_hw", [(32, [16, 32, 64], 8), (224, [16, 32, 64, 128], 4)])
def test_controller_is_the_authors_policy_network(resolution, widths, pooled_hw):
    """``Policy32``: three residual blocks; ``Policy224``: four, on a 2× pooled image through a 7×7 stride-2 stem and
    max-pooling, down to a 4×4 map before global pooling."""
    controller = Controller(resolution).eval()
    assert [block.body[0][0].out_channels for block in controller.blocks] == widths
    assert controller.logits.in_features == widths[-1]
    seen = []
    controller.pool.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].shape))
    controller(torch.randn(1, 3, resolution, resolution))
    assert seen == [torch.Size([1, widths[-1], pooled_hw, pooled_hw])]


def test_a_standardized_controller_does_not_see_brightness():
    """--controller-input standardized: the same policy for an image made brighter and of more contrast; the default
    controller's changes."""
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32)
    brighter = 2 * images + 0.5
    standardized, plain = Controller(32, "standardized").eval(), Controller(32).eval()
    with torch.no_grad():
        assert torch.allclose(standardized(images), standardized(brighter), atol=1e-5)
        assert not torch.allclose(plain(images), plain(brighter), atol=1e-3)


def test_the_controller_options_travel_from_the_search_to_fine_tuning(trained_run, profiled, tmp_path, cli):
    """A search with a standardised, wider, downsampling controller (and the confidence reward) records them in every
    snapshot; fine-tuning and every reader of a snapshot or finetune.pt build that controller; a bad value is one
    line."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("run.json", "pretrain.pt"):
        (run / name).write_bytes((trained_run / name).read_bytes())
    common = ("train", *TINY, "--search-epochs", "1", "--finetune-epochs", "1", "--upper-end", "0.9", "--lut",
              str(profiled), "--out", str(run), "--no-tensorboard", "--controller-width", "0.5",
              "--controller-downsample", "2", "--reward-accuracy", "confidence", "--controller-input")
    for stage in ("search", "finetune"):
        trained = cli(*common, "standardized", "--stage", stage)
        assert trained.returncode == 0, trained.stderr
    options = {"input_mode": "standardized", "width": 0.5, "downsample": 2}
    for path in (run / "snapshots/epoch-000.pt", run / "search.pt", run / "finetune.pt"):
        state = load_checkpoint(path)
        controller = saved_controller(state, 32)
        assert controller.options() == options, path
        assert controller.logits.in_features == 32, "half of the 64 channels of the last block"
    settings = load_checkpoint(run / "search.pt")["settings"]
    assert (settings["controller_input"], settings["reward_accuracy"]) == ("standardized", "confidence")
    for bad, message in ((("brightness",), "unknown controller input 'brightness'"),
                         (("image", "--controller-downsample", "3"), "a whole divisor of 32 px"),
                         (("image", "--reward-accuracy", "margin"), "unknown reward accuracy 'margin'")):
        refused = cli(*common, *bad, "--stage", "search")
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1


def test_a_table_timed_with_another_controller_is_refused():
    """The 224 px tables in docs/results were timed before the controller grew its fourth block (``Policy224``)."""
    table = load_table(Path(__file__).parents[1] / "docs/results/correlate-224/res224-v2.json")
    message = "timed another controller .blocks 16-32-64; this instanas has blocks 16-32-64-128"
    with pytest.raises(LUTError, match=message):
        _ = table.controller_ms


def test_deterministic_policy_thresholds_and_fills_required_cells():
    probabilities = torch.full((2, 17, 5), 0.2)
    probabilities[0, 5, 1] = 0.9
    policy = deterministic_policy(probabilities)
    assert policy[0, 5, 1] and policy[0, 5].sum() == 1
    assert np.array_equal(policy[1].numpy(), smallest_architecture()), "required cells run basic, others skip"
    assert policy.numpy()[:, REQUIRED_CELLS].any(-1).all()


def test_encouragement_keeps_choices_away_from_certainty():
    p = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(encouraged(p, 0.8), torch.tensor([0.2, 0.5, 0.8]))


def test_latency_reward_is_quadratic_inside_the_bounds():
    z = torch.tensor([2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    reward = latency_reward(z, upper=10.0, lower=4.0)
    torch.testing.assert_close(reward, torch.tensor([0.0, 0.0, 8 / 9, 8 / 9, 0.0, 0.0]))
    assert latency_reward(torch.tensor([7.0]), 10.0, 4.0).item() == pytest.approx(1.0)
    correct = torch.tensor([True, False])
    values = latency_reward(torch.tensor([7.0, 7.0]), 10.0, 4.0)
    torch.testing.assert_close(instance_reward(correct, values), torch.tensor([10.0, -10.0]))


def test_a_confident_reward_is_eq_2_in_expectation_over_the_childs_prediction():
    """--reward-accuracy confidence: a probability of 1 or 0 pays as right or wrong; in between, the expectation."""
    values = torch.tensor([0.5, 0.5, 0.5, 1.0])
    paid = instance_reward(torch.tensor([1.0, 0.0, 0.25, 0.9]), values)
    torch.testing.assert_close(paid[:2], instance_reward(torch.tensor([True, False]), values[:2]))
    torch.testing.assert_close(paid[2:], torch.tensor([0.25 * 5.0 + 0.75 * -10.0, 0.9 * 10.0 + 0.1 * -10.0]))


def test_bounds_come_from_the_lut_and_fall_linearly(profiled):
    table = load_table(profiled)
    bounds = LatencyBounds.from_table(table, epochs=5, end_fraction=0.9)
    assert bounds.lower == pytest.approx(table.estimate(smallest_architecture()))
    assert bounds.upper(0) == pytest.approx(0.7 * table.estimate(np.ones((17, 5), bool)))
    assert bounds.upper(4) == pytest.approx(0.9 * table.estimate(mobilenetv2_architecture()))
    assert bounds.upper(2) == pytest.approx((bounds.upper(0) + bounds.upper(4)) / 2)
    with pytest.raises(LUTError, match="latency bounds are empty"):
        LatencyBounds.from_table(table, epochs=5, end_fraction=0.1)


def test_drop_path_rises_from_the_middle_of_pretraining():
    rates = [drop_path_rate(epoch, 10, 0.5) for epoch in range(10)]
    assert rates[:5] == [0.0] * 5 and rates[-1] == pytest.approx(0.5)
    assert all(a < b for a, b in zip(rates[4:], rates[5:]))


def test_pretraining_draws_a_child_per_image():
    rng = np.random.default_rng(0)
    children = Pretrain.children(16, 0.5, rng, "cpu").numpy()
    assert len({child.tobytes() for child in children}) == 16, "each image its own random child"
    assert children[:, REQUIRED_CELLS].any(-1).all()
    assert 0.3 < children.mean() < 0.7
    assert Pretrain.children(4, 0.0, rng, "cpu").all(), "before drop-path starts, every module runs"


def test_shrinking_pretraining_spreads_the_same_mean_rate_over_sparse_and_dense_children():
    rng = np.random.default_rng(0)
    fixed = Pretrain.children(400, 0.5, rng, "cpu").numpy().reshape(400, -1).mean(1)
    spread = Pretrain.children(400, 0.5, rng, "cpu", spread=True).numpy().reshape(400, -1).mean(1)
    assert abs(spread.mean() - fixed.mean()) < 0.1, \
        "about the same mean rate (keep clipped at 0.05; required cells never empty)"
    assert fixed.min() > 0.3, "one rate for all: no image sees a sparse child"
    assert spread.min() < 0.15 and spread.max() > 0.9, "per-image rates: sparse and dense children both trained"


def test_digits_are_real_images_split_apart():
    train, val = load_dataset("digits", None, train=True), load_dataset("digits", None, train=False)
    assert len(train) + len(val) == 1797 and len(val) == 360
    image, label = val[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10 and image.std() > 0.3


def test_a_share_of_the_training_images_is_held_out_from_training(tmp_path):
    """The held-out images are none of the trained-on ones, and come without augmentation (the same twice)."""
    trainer = Trainer(TrainConfig(dataset="digits", workers=0, limit_train=200, holdout=0.1), tmp_path, Workers())
    assert len(trainer.train_set) == 180 and len(trainer.holdout_set) == 20
    assert not set(trainer.train_set.indices) & set(trainer.holdout_set.indices)
    torch.testing.assert_close(trainer.holdout_set[0][0], trainer.holdout_set[0][0])
    assert json.loads((tmp_path / "run.json").read_text())["holdout"] == 0.1
    everything = Trainer(TrainConfig(dataset="digits", workers=0, holdout=0.0), tmp_path / "all", Workers())
    assert everything.holdout_set is None
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps({"dataset": "digits", "resolution": 32}))
    assert read_run(tmp_path / "old")["holdout"] == 0.0, "runs from before --holdout trained on every image"


def test_run_json_names_the_data_folder_relative_to_the_run(tmp_path):
    data, run = tmp_path / "data" / "cifar", tmp_path / "runs" / "a"
    data.mkdir(parents=True)
    run.mkdir(parents=True)
    record_run(run, TrainConfig(dataset="cifar10", data_dir=str(data)), 32)
    assert json.loads((run / "run.json").read_text())["data_dir"] == os.path.join("..", "..", "data", "cifar")
    assert Path(read_run(run)["data_dir"]).resolve() == data.resolve()
    (run / "run.json").write_text(json.dumps({"data_dir": str(data), "dataset": "cifar10", "resolution": 32}))
    assert read_run(run)["data_dir"] == str(data), "an absolute path of an older run folder is kept"


def test_cutout_erases_one_square():
    torch.manual_seed(1)
    erased = Cutout(8)(torch.ones(3, 32, 32))
    zeros = (erased == 0).all(0)
    assert 0 < zeros.sum() <= 64 and zeros.any(0).sum() <= 8 and zeros.any(1).sum() <= 8


def test_missing_or_malformed_dataset_folders_are_one_line_errors(tmp_path, cli):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load_dataset("cifar10", tmp_path / "nowhere", train=True)
    with pytest.raises(DatasetError, match="torchvision's layout"):
        load_dataset("cifar10", tmp_path, train=True)
    with pytest.raises(DatasetError, match="ImageFolder"):
        load_dataset("tinyimagenet", tmp_path, train=True)
    result = cli("train", "--dataset", "cifar100", "--data-dir", str(tmp_path), "--stage", "pretrain", "--out",
                 str(tmp_path / "run"))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_three_stages_then_evaluate_end_to_end(profiled, trained_run, cli):
    run = trained_run
    for name in ("pretrain", "search", "finetune", "mobilenetv2"):
        metrics = pd.read_csv(run / f"metrics-{name}.csv")
        assert (run / f"{name}.pt").exists() and len(metrics) == {"search": 2}.get(name, 1)
        assert metrics["val_images"].eq(LIMIT_VAL).all() and metrics["val_accuracy"].between(0, 1).all()
    search = pd.read_csv(run / "metrics-search.csv")
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["epoch-000.pt", "epoch-001.pt"]
    assert search["upper_ms"].iloc[1] < search["upper_ms"].iloc[0], "the upper bound falls"
    assert (search["val_lut_ms"] >= search["lower_ms"]).all()

    evaluated = cli("evaluate", "--run", str(run), "--lut", str(profiled), "--measure", "2", "--min-time", "0.02")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((run / "evaluation" / "report.json").read_text())
    table = load_table(profiled)
    assert report["images"] == LIMIT_VAL and 0 <= report["accuracy"] <= 1
    chosen = pd.read_csv(run / "evaluation" / "architectures.csv")
    per_arch = [table.estimate(parse_architecture(arch), report["lut"]["mode"]) for arch in chosen["arch"]]
    expected = np.average(np.array(per_arch) + table.controller_ms, weights=chosen["images"])
    assert chosen["images"].sum() == LIMIT_VAL and report["lut_ms"]["mean"] == pytest.approx(expected), \
        "the mean LUT latency is each image's architecture's estimate plus the controller"
    assert report["measured_ms"]["architectures_measured"] <= 2 and report["measured_ms"]["controller_ms"] > 0
    assert set(report["mobilenetv2"]) >= {"accuracy", "lut_ms", "spearman_latency_vs_baseline_confidence"}
    paths = [report["checkpoint"], report["lut"]["path"], report["mobilenetv2"]["checkpoint"]]
    assert not any(os.path.isabs(path) for path in paths), f"reports carry no absolute paths: {paths}"
    architectures = pd.read_csv(run / "evaluation" / "architectures.csv")
    assert architectures["images"].sum() == LIMIT_VAL
    buckets = pd.DataFrame(report["by_clutter"])  # cluttered digits: per clutter bucket
    names = [f"{low}–{high}" for low, high in PROTOCOLS["cluttered-digits"].buckets()]
    assert list(buckets["clutter"]) == names and buckets["images"].sum() == LIMIT_VAL
    shown = buckets[buckets["images"] > 0]
    assert np.average(shown["accuracy"], weights=shown["images"]) == pytest.approx(report["accuracy"])
    assert np.average(shown["lut_ms_mean"], weights=shown["images"]) == pytest.approx(report["lut_ms"]["mean"])
    assert "spearman_latency_vs_clutter" in report and len(report["mobilenetv2"]["by_clutter"]) == len(names)
    assert "Spearman(latency, clutter)" in evaluated.stdout
    assert f"clutter {names[0]} (" in evaluated.stdout or not buckets["images"].iloc[0]
    assert (run / "evaluation" / "latency_histogram.png").read_bytes()[:4] == b"\x89PNG"


def test_stages_refuse_to_run_out_of_order_or_over_a_checkpoint(profiled, tmp_path, cli):
    run = tmp_path / "run"
    early = cli("train", *TINY, "--stage", "search", "--out", str(run), "--lut", str(profiled))
    assert early.returncode == 2 and "needs stage pretrain" in early.stderr
    assert cli("train", *TINY, "--stage", "pretrain", "--pretrain-epochs", "1", "--out", str(run)).returncode == 0
    again = cli("train", *TINY, "--stage", "pretrain", "--pretrain-epochs", "1", "--out", str(run))
    assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
    other = cli("train", *TINY, "--stage", "pretrain", "--pretrain-epochs", "3", "--out", str(run), "--resume")
    assert other.returncode == 2 and "other settings (pretrain_epochs)" in other.stderr


def test_killed_pretraining_resumes_from_its_last_epoch(tmp_path, cli):
    """One step an epoch; the run is killed (SIGKILL) once its first epoch is journaled, then resumed: it ends where
    an uninterrupted run ends (every epoch draws its children, shuffling and augmentation from its own seed)."""
    def command(run):  # plain digits: nothing to generate
        return ("train", *TINY, "--dataset", "digits", "--limit-train", BATCH, "--limit-val", BATCH, "--holdout", "0",
                "--stage", "pretrain", "--pretrain-epochs", "2", "--out", str(run), "--no-tensorboard")
    run = tmp_path / "run"
    metrics = run / "metrics-pretrain.csv"
    kill_when(command(run), lambda: metrics.exists() and len(pd.read_csv(metrics)) >= 1, timeout=300)
    before = pd.read_csv(metrics)
    assert len(before) == 1, "killed after its first epoch"
    resumed = cli(*command(run), "--resume")  # the resumed run need not be a fresh process: the killed one was
    assert resumed.returncode == 0, resumed.stderr
    after = pd.read_csv(metrics)
    assert after["epoch"].tolist() == [0, 1], "no epoch lost or repeated"
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)
    whole = cli(*command(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    uninterrupted = pd.read_csv(tmp_path / "whole" / "metrics-pretrain.csv")
    pd.testing.assert_frame_equal(after.drop(columns="epoch_s"), uninterrupted.drop(columns="epoch_s"))


def test_pretraining_at_64_px_on_cluttered_digits(tmp_path, cli):
    """The 64 px path (TinyImageNet's resolution) trains for real on the 64 px cluttered digits; --no-tensorboard
    writes no event files."""
    run = tmp_path / "run"
    result = cli("train", *TINY, "--dataset", "cluttered-digits-64", "--limit-train", "4", "--limit-val", "4",
                 "--pretrain-batch", "4", "--holdout", "0", "--stage", "pretrain", "--pretrain-epochs", "1",
                 "--out", str(run), "--no-tensorboard")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "run.json").read_text())["resolution"] == 64
    metrics = pd.read_csv(run / "metrics-pretrain.csv")
    assert metrics["train_images"].tolist() == [4] and np.isfinite(metrics["train_loss"]).all()
    assert not (run / "tb").exists()


def test_every_stage_writes_its_metrics_as_tensorboard_scalars(trained_run):
    """TensorBoard's own event reader finds, per stage, every number of the metrics file (losses, accuracies, LUT
    latency, the search's bound U_t as upper_ms) at every epoch, with the file's values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for stage in ("pretrain", "search", "finetune", "mobilenetv2"):
        metrics = pd.read_csv(trained_run / f"metrics-{stage}.csv")
        events = EventAccumulator(str(trained_run / "tb" / stage))
        events.Reload()
        numbers = [column for column in metrics.select_dtypes("number").columns if column != "epoch"]
        assert sorted(events.Tags()["scalars"]) == sorted(numbers), stage
        for column in numbers:
            logged = events.Scalars(column)
            assert [event.step for event in logged] == metrics["epoch"].tolist(), (stage, column)
            assert np.allclose([event.value for event in logged], metrics[column], rtol=1e-6), (stage, column)
    assert {"upper_ms", "val_lut_ms", "controller_loss", "val_accuracy"} <= set(
        pd.read_csv(trained_run / "metrics-search.csv").columns)


def test_distributed_pretraining_on_two_cpu_processes(tmp_path):
    """torchrun with the gloo backend: each process sees half the images (one batch), the metrics count all of them."""
    run = tmp_path / "run"
    images = 8  # four a process, one batch of 4 each (batch norm needs two or more at the 1×1 head)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
               "-m", "instanas", "train", *TINY, "--dataset", "digits", "--limit-train", str(images),
               "--limit-val", str(images),
               "--pretrain-batch", "4", "--holdout", "0", "--stage", "pretrain", "--pretrain-epochs", "1",
               "--out", str(run)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = pd.read_csv(run / "metrics-pretrain.csv")
    assert metrics["train_images"].tolist() == [images] and metrics["val_images"].tolist() == [images]


def test_fused_optimizers_step_as_the_loop_does(tmp_path):
    """--fused-optimizer: the stages' Adam and SGD run PyTorch's fused kernel, and their steps move the weights as the
    loop over parameter tensors does, to rounding; one kernel's optimizer state resumes in the other."""
    stages = {}
    for fused in (False, True):
        torch.manual_seed(0)
        config = TrainConfig(dataset="digits", workers=0, limit_train=16, limit_val=8, holdout=0, fused_optimizer=fused)
        trainer = Trainer(config, tmp_path / f"fused-{fused}", Workers(), show_progress=False, tensorboard=False)
        stage, pretrain = MobileNetV2Baseline(trainer, resume=False), Pretrain(trainer, resume=False)
        assert bool(stage.optimizer.defaults["fused"]) is fused and bool(pretrain.optimizer.defaults["fused"]) is fused
        images, labels = next(iter(trainer.loader(trainer.train_set, 8, train=False)))
        initial = {key: value.clone() for key, value in stage.network.state_dict().items()}
        stage.step(trainer.batch(images), labels)  # same gradients: the updates differ by rounding only
        stages[fused] = stage
    loop, fused = (stages[kind].network.state_dict() for kind in (False, True))
    assert not torch.equal(fused["stem.0.0.weight"], initial["stem.0.0.weight"]), "the step moved the weights"
    for key in loop:
        torch.testing.assert_close(fused[key], loop[key], rtol=1e-5, atol=1e-6, msg=key)
    stages[False].optimizer.load_state_dict(stages[True].optimizer.state_dict())
    stages[False].step(trainer.batch(images), labels)
    assert all(torch.isfinite(value).all() for value in stages[False].network.state_dict().values())

    # SGD with momentum where a module gets its first gradient after the first step (a module no child ran so far)
    weights, optimizers = {}, {}
    for kind, stage in stages.items():
        torch.manual_seed(1)
        modules = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
        optimizers[kind] = stage.trainer.optimizer("sgd", modules.parameters(), 0.1, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-4)
        for used in ([0], [0, 1], [0, 1]):
            optimizers[kind].zero_grad(set_to_none=True)
            sum(modules[index](torch.ones(2, 3)).square().sum() for index in used).backward()
            optimizers[kind].step()
        weights[kind] = [parameter.detach().clone() for parameter in modules.parameters()]
    for loop_weight, fused_weight in zip(weights[False], weights[True], strict=True):
        torch.testing.assert_close(fused_weight, loop_weight, rtol=1e-5, atol=1e-6)
    partial = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
    loop_state = torch.optim.SGD(partial.parameters(), lr=0.1, momentum=0.9)
    partial[0](torch.ones(2, 3)).sum().backward()
    loop_state.step()  # a loop optimizer's state, with no buffer for the module that did not run
    resumed = stages[True].trainer.optimizer("sgd", partial.parameters(), 0.1, momentum=0.9)
    resumed.load_state_dict(loop_state.state_dict())
    sum(module(torch.ones(2, 3)).sum() for module in partial).backward()
    resumed.step()
    assert all(torch.isfinite(parameter).all() for parameter in partial.parameters())


def test_training_lays_networks_out_channels_last_unless_told(trained_run, tmp_path, cli):
    """The default memory format reaches the checkpoints (weights as trained); an unknown one is one line."""
    weight = load_checkpoint(trained_run / "pretrain.pt")["metagraph"]["cells.7.options.4.body.0.0.weight"]
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    refused = cli("train", *TINY, "--memory-format", "nhwc", "--out", str(tmp_path / "run"))
    assert refused.returncode == 2 and "memory format 'nhwc'" in refused.stderr and refused.stderr.count("\n") == 1


def test_pretraining_can_start_from_the_runs_trained_mobilenetv2(trained_run, tmp_path, cli):
    """--pretrain-init mobilenetv2 loads the trained MobileNetV2 stage (stem, head, mb3e6 modules) into the meta-graph
    it pre-trains; without that stage it is one line naming it."""
    refused = cli("train", *TINY, "--stage", "pretrain", "--pretrain-init", "mobilenetv2", "--out", str(tmp_path / "a"))
    assert refused.returncode == 2 and "needs stage mobilenetv2" in refused.stderr, refused.stderr
    run = tmp_path / "b"
    run.mkdir()
    (run / "mobilenetv2.pt").write_bytes((trained_run / "mobilenetv2.pt").read_bytes())
    config = TrainConfig(dataset="cluttered-digits", workers=0, limit_train=18, limit_val=16,
                         pretrain_init="mobilenetv2")
    started = Pretrain(Trainer(config, run, Workers(), show_progress=False, tensorboard=False), resume=False)
    trained = load_checkpoint(run / "mobilenetv2.pt")["metagraph"]
    for key in ("stem.0.0.weight", "cells.5.options.0.body.1.0.weight", "cells.5.options.0.body.1.1.running_var",
                "head.3.weight"):
        assert torch.equal(started.metagraph.state_dict()[key], trained[key]), key


def test_a_64px_run_warm_starts_from_a_32px_run(trained_run, tmp_path, cli):
    """--warm-start RUN starts pre-training from RUN's pretrain.pt and stage mobilenetv2 from its mobilenetv2.pt,
    across resolutions (only strides depend on it); the checkpoint records it, so a resume without it is refused;
    a folder that is no run, lacks the stage, merges otherwise or holds another network is one line."""
    config = TrainConfig(dataset="cluttered-digits-64", workers=0, limit_train=18, limit_val=16,
                         warm_start=str(trained_run))
    trainer = Trainer(config, tmp_path / "direct", Workers(), show_progress=False, tensorboard=False)
    started = {"pretrain": Pretrain(trainer, resume=False).metagraph,
               "mobilenetv2": MobileNetV2Baseline(trainer, resume=False).network}
    for stage, network in started.items():
        source = load_checkpoint(trained_run / f"{stage}.pt")["metagraph"]
        for key in ("stem.0.0.weight", "cells.3.options.4.body.0.0.weight", "cells.16.options.0.body.1.1.running_mean",
                    "head.3.weight"):
            assert torch.equal(network.state_dict()[key], source[key]), (stage, key)

    run = tmp_path / "run64"
    command = ("train", *TINY, "--dataset", "cluttered-digits-64", "--stage", "mobilenetv2", "--finetune-epochs", "1",
               "--out", str(run), "--no-tensorboard")
    trained = cli(*command, "--warm-start", str(trained_run))
    assert trained.returncode == 0, trained.stderr
    assert load_checkpoint(run / "mobilenetv2.pt")["settings"]["warm_start"] == str(trained_run)
    assert read_run(run)["resolution"] == 64
    refused = cli(*command, "--resume")
    assert refused.returncode == 2 and "other settings (warm_start)" in refused.stderr, refused.stderr

    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text((trained_run / "run.json").read_text())
    foreign = {"metagraph": MetaGraph(32, 100).state_dict()}
    save_checkpoint(other / "pretrain.pt", foreign)
    summed = tmp_path / "summed"
    summed.mkdir()
    (summed / "run.json").write_text(json.dumps(read_run(trained_run) | {"cell_merge": "sum"}))
    pretrain = ("train", *TINY, "--stage", "pretrain", "--pretrain-epochs", "1", "--no-tensorboard")
    for source, message in ((tmp_path, "not a training run folder"), (other, "does not fit this run's"),
                            (summed, "its cells merge by sum, this run's by mean")):
        refused = cli(*pretrain, "--out", str(tmp_path / f"to-{source.name}"), "--warm-start", str(source))
        assert refused.returncode == 2 and message in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr
    missing = cli("train", *TINY, "--stage", "mobilenetv2", "--finetune-epochs", "1", "--no-tensorboard",
                  "--out", str(tmp_path / "m"), "--warm-start", str(other))
    assert missing.returncode == 2 and "no mobilenetv2.pt to warm-start" in missing.stderr, missing.stderr
    both = cli(*pretrain, "--out", str(tmp_path / "both"), "--warm-start", str(trained_run), "--pretrain-init",
               "mobilenetv2")
    assert both.returncode == 2 and "both choose where pre-training starts" in both.stderr, both.stderr


def test_pretraining_with_adam_and_checkpoints_saved_before_the_option(tmp_path, cli):
    """--pretrain-optimizer adam pre-trains with Adam at --pretrain-lr; a checkpoint saved before the option existed
    resumes as SGD (what it was trained with), and is refused for Adam naming the setting; an unknown optimiser is
    one line."""
    run = tmp_path / "run"
    command = ("train", *TINY, "--dataset", "digits", "--limit-train", BATCH, "--limit-val", BATCH, "--holdout", "0",
               "--stage", "pretrain", "--out", str(run), "--no-tensorboard")
    trained = cli(*command, "--pretrain-epochs", "1", "--pretrain-optimizer", "adam", "--pretrain-lr", "0.01")
    assert trained.returncode == 0, trained.stderr
    state = load_checkpoint(run / "pretrain.pt")
    assert state["settings"]["pretrain_optimizer"] == "adam" and "exp_avg" in state["optimizer"]["state"][0]
    assert np.isfinite(pd.read_csv(run / "metrics-pretrain.csv")["train_loss"]).all()
    del state["settings"]["pretrain_optimizer"]  # as pretrain.pt was saved before the option
    state["settings"]["pretrain_lr"] = 0.1
    state["optimizer"] = torch.optim.SGD(MetaGraph(32, 10).parameters(), lr=0.1).state_dict()
    save_checkpoint(run / "pretrain.pt", state)
    config = TrainConfig(dataset="digits", workers=0, limit_train=int(BATCH), limit_val=int(BATCH), holdout=0,
                         pretrain_batch=int(BATCH), pretrain_epochs=1)
    settings = Pretrain(Trainer(config, run, Workers(), show_progress=False, tensorboard=False), resume=True).settings
    assert settings["pretrain_optimizer"] == "sgd"
    refused = cli(*command, "--pretrain-epochs", "1", "--pretrain-optimizer", "adam", "--resume")
    assert refused.returncode == 2, refused.stderr
    assert "saved with other settings (pretrain_optimizer)" in refused.stderr, refused.stderr
    unknown = cli(*command, "--pretrain-optimizer", "rmsprop")
    assert unknown.returncode == 2 and "unknown pre-training optimizer 'rmsprop'" in unknown.stderr


def test_an_unknown_dataset_or_a_run_folder_of_another_one_is_one_line(trained_run, cli):
    unknown = cli("train", *TINY, "--dataset", "mnist-cluttered", "--out", str(trained_run))
    assert unknown.returncode == 2 and "unknown dataset 'mnist-cluttered'" in unknown.stderr
    other = cli("train", *TINY, "--dataset", "digits", "--stage", "pretrain", "--resume", "--out", str(trained_run))
    assert other.returncode == 2 and "trained with other data" in other.stderr and other.stderr.count("\n") == 1


def _image_folder(root: Path, classes: int = 3, per_class: dict | None = None) -> Path:
    """A user's image folder: PNGs of several sizes, each class its own colour, train/ and val/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (per_class or {"train": 6, "val": 3}).items():
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                size = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
                pixels = rng.integers(0, 60, (*size[::-1], 3)) + 60 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")
    return root


def test_every_stage_trains_and_evaluates_on_your_own_images(profiled, tmp_path, cli):
    """--dataset imagefolder at 32 px: images of any size, three classes; all stages, then evaluate."""
    data, run = _image_folder(tmp_path / "images"), tmp_path / "run"
    trained = cli("train", "--dataset", "imagefolder", "--resolution", "32", "--data-dir", str(data), "--workers", "0",
                  "--pretrain-batch", "4", "--search-batch", "4", "--finetune-batch", "4", "--pretrain-epochs", "1",
                  "--search-epochs", "1", "--finetune-epochs", "1", "--upper-end", "0.9", "--lut", str(profiled),
                  "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    saved = read_run(run)
    assert (saved["dataset"], saved["resolution"]) == ("imagefolder", 32)
    for stage in ("pretrain", "search", "finetune", "mobilenetv2"):
        metrics = pd.read_csv(run / f"metrics-{stage}.csv")
        assert metrics["val_images"].eq(9).all() and np.isfinite(metrics.filter(like="_loss")).all().all(), stage
    assert load_checkpoint(run / "finetune.pt")["metagraph"]["head.3.weight"].shape == (3, 1280), "three classes"
    evaluated = cli("evaluate", "--run", str(run), "--lut", str(profiled), "--measure", "0")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((run / "evaluation" / "report.json").read_text())["images"] == 9


def test_a_bad_image_folder_is_one_line_naming_the_path(tmp_path, cli):
    def refused(data: Path, *extra: str) -> str:
        result = cli("train", "--dataset", "imagefolder", "--data-dir", str(data), *extra, "--stage", "mobilenetv2",
                     "--workers", "0", "--out", str(tmp_path / "run"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        return result.stderr

    good = _image_folder(tmp_path / "good", per_class={"train": 2, "val": 1})
    assert "needs --resolution 32, 64 or 224" in refused(good)
    assert "needs --resolution 32, 64 or 224" in refused(good, "--resolution", "48")
    no_val = _image_folder(tmp_path / "no-val", per_class={"train": 2})
    assert f"{no_val / 'val'}: no such folder" in refused(no_val, "-r", "32")
    empty = _image_folder(tmp_path / "empty", per_class={"train": 2, "val": 1})
    (empty / "train" / "class3").mkdir()
    assert str(empty / "train") in refused(empty, "-r", "64")
    broken = _image_folder(tmp_path / "broken", per_class={"train": 2, "val": 1})
    (broken / "train" / "class1" / "1.png").write_bytes(b"not a png")
    assert f"{broken / 'train' / 'class1' / '1.png'}: not a readable image" in refused(broken, "-r", "32")
    renamed = _image_folder(tmp_path / "renamed", per_class={"train": 2, "val": 1})
    (renamed / "val" / "class2").rename(renamed / "val" / "other")
    assert f"{renamed / 'val'}: its class folders differ from the training split's" in refused(renamed, "-r", "32")
    assert "cifar10 is a 32 px data set" in cli("train", "--dataset", "cifar10", "-r", "64", "--out", "x").stderr
