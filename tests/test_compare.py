"""The baselines (MobileNetV2 widths, one-shot, BlockDrop, ConvNet-AIG) and ``instanas compare``, on real digits."""

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import BATCH, LIMIT_TRAIN, LIMIT_VAL, TINY
from torch import nn

from instanas.baselines.backbone import DROPPABLE_CELLS, backbone_selection
from instanas.baselines.convnet_aig import GatedMobileNetV2
from instanas.baselines.mobilenetv2 import ScaledMobileNetV2, scaled
from instanas.baselines.oneshot import pareto_frontier, score_architectures
from instanas.baselines.references import reference_names, reference_network
from instanas.cluttered import PROTOCOLS
from instanas.metagraph import MetaGraph
from instanas.space import (
    MODULE_NAMES,
    REQUIRED_CELLS,
    correlation_sample,
    format_architecture,
    mobilenetv2_architecture,
    smallest_architecture,
)
from instanas.training.checkpoints import load_checkpoint
from instanas.training.loop import self_critical_loss
from lut.store import load_table

MB3E6 = MODULE_NAMES.index("mb3e6")


def _parameters(module):
    return [tuple(p.shape) for p in module.parameters()]


def test_mobilenetv2_widths_scale_like_torchvision_and_1x_is_the_space_member():
    assert [scaled(c, 0.4) for c in (32, 16, 24, 1280)] == [16, 8, 16, 512]
    assert [scaled(c, 1.4) for c in (32, 16, 24, 1280)] == [48, 24, 32, 1792]
    child = MetaGraph(32, 10).child(mobilenetv2_architecture())
    assert _parameters(ScaledMobileNetV2(32, 1.0, 10)) == _parameters(child)
    sizes = [sum(p.numel() for p in ScaledMobileNetV2(32, width, 10).parameters()) for width in (0.4, 1.0, 1.4)]
    assert sizes[0] < sizes[1] < sizes[2]
    network = ScaledMobileNetV2(64, 0.4, 200)
    x = torch.randn(1, 3, 64, 64)
    for part, (channels, size) in network.parts()[:-1]:  # each part's recorded input shape is what it really sees
        assert x.shape[1:] == (channels, size, size)
        x = part(x)


def test_pareto_frontier_keeps_exactly_the_undominated_points():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lut_ms": rng.uniform(5, 20, 200).round(1), "accuracy": rng.uniform(0, 1, 200).round(2)})
    frontier = pareto_frontier(frame)
    assert frontier["lut_ms"].is_monotonic_increasing and frontier["accuracy"].is_monotonic_increasing
    for row in frame.itertuples():
        dominated = ((frame["lut_ms"] <= row.lut_ms) & (frame["accuracy"] >= row.accuracy)
                     & ((frame["lut_ms"] < row.lut_ms) | (frame["accuracy"] > row.accuracy))).any()
        on_frontier = ((frontier["lut_ms"] == row.lut_ms) & (frontier["accuracy"] == row.accuracy)).any()
        assert on_frontier == (not dominated)


def test_backbone_selection_is_mobilenetv2_with_the_dropped_cells_empty():
    keep = torch.zeros(2, len(DROPPABLE_CELLS), dtype=torch.bool)
    keep[1] = True
    selection = backbone_selection(keep).numpy()
    assert np.array_equal(selection[1], mobilenetv2_architecture())
    assert selection[0, REQUIRED_CELLS].sum() == REQUIRED_CELLS.sum() and not selection[0, ~REQUIRED_CELLS].any()


def test_closed_convnet_aig_gates_really_skip_their_cells():
    torch.manual_seed(0)
    network = GatedMobileNetV2(MetaGraph(32, 10)).eval()
    for gate in network.gates.values():  # every gate closed
        gate.body[-1].bias.data = torch.tensor([5.0, -5.0])
        gate.body[-1].weight.data.zero_()
    calls = {cell: 0 for cell in DROPPABLE_CELLS}
    for cell in DROPPABLE_CELLS:
        network.backbone.cells[cell].options[MB3E6].register_forward_hook(
            lambda *_, cell=cell: calls.__setitem__(cell, calls[cell] + 1))
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits, selection = network.decide(images)
        static = network.backbone.child(selection[0].numpy())(images)
    assert not any(calls.values()), "a closed gate's cell must not run"
    assert not selection[:, DROPPABLE_CELLS].any()
    torch.testing.assert_close(logits, static)


def test_self_critical_loss_leaves_undecided_entries_on_and_without_gradient():
    torch.manual_seed(0)
    logits = torch.zeros(6, 4, requires_grad=True)
    decided = torch.tensor([False, False, True, True]).expand(6, -1)
    rewards = []

    def reward(actions, drawn):
        rewards.append(actions.clone())
        return (actions.sum(1),)

    loss, _ = self_critical_loss(torch.sigmoid(logits), reward, alpha=0.8, entropy_weight=0.0, decided=decided)
    loss.backward()
    sampled, greedy = rewards
    assert sampled[:, :2].eq(1).all() and greedy[:, :2].eq(1).all()
    assert logits.grad[:, :2].eq(0).all()


def test_oneshot_scores_are_journaled_and_not_recomputed(profiled, tmp_path):
    table = load_table(profiled)
    torch.manual_seed(0)
    metagraph = MetaGraph(32, 10).eval()
    bn_images = [torch.randn(8, 3, 32, 32)]
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    journal = tmp_path / "oneshot.csv"
    first = score_architectures(metagraph, bn_images, batches, table, samples=3, seed=0, journal_path=journal,
                                resume=True, show_progress=False)
    archs, keeps = correlation_sample(3, 0)
    assert list(first["arch"]) == [format_architecture(arch) for arch in archs], "drawn from cheap to rich"
    assert np.allclose(first["keep"], keeps, atol=1e-4) and (first["wall_s"] > 0).all()
    assert np.allclose(first["lut_ms"], [table.estimate(arch, table.default_mode) for arch in archs])
    runs = []
    metagraph.stem.register_forward_hook(lambda *_: runs.append(1))
    again = score_architectures(metagraph, bn_images, batches, table, samples=3, seed=0, journal_path=journal,
                                resume=True, show_progress=False)
    assert not runs and again.equals(first)


def test_oneshot_scores_each_child_with_its_own_batch_norm_statistics(profiled, tmp_path):
    """Shared statistics made wrong on purpose: with them a child misses images it classifies as labelled once its
    statistics are re-estimated on the calibration images; the meta-graph's own statistics are back afterwards."""
    table = load_table(profiled)
    torch.manual_seed(0)
    metagraph = MetaGraph(32, 10).eval()
    for layer in metagraph.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.fill_(3.0)
            layer.running_var.fill_(0.01)
    saved = copy.deepcopy(metagraph.state_dict())
    bn_images = [torch.randn(16, 3, 32, 32) for _ in range(2)]
    images = torch.randn(24, 3, 32, 32)
    reference = copy.deepcopy(metagraph).child(correlation_sample(2, 0)[0][0])  # the statistics estimated by hand
    for layer in reference.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None
    with torch.no_grad():
        reference.train()
        for batch in bn_images:
            reference(batch)
        labels = reference.eval()(images).argmax(1)
    scores = score_architectures(metagraph, bn_images, [(images, labels)], table, samples=2, seed=0,
                                 journal_path=tmp_path / "oneshot.csv", resume=False, show_progress=False)
    assert scores.loc[0, "accuracy"] == 1.0
    assert scores.loc[0, "accuracy_shared_bn"] < 0.5
    assert all(torch.equal(value, saved[key]) for key, value in metagraph.state_dict().items())


def test_blockdrop_fine_tuning_sums_the_policy_loss_over_images():
    """finetune.py: −Σ_images log π(drawn) · advantage, not the mean (cl_training.py's curriculum divides by the
    batch)."""
    probabilities = torch.sigmoid(torch.randn(5, 3, generator=torch.Generator().manual_seed(0))).requires_grad_()
    losses, priced = {}, []
    for summed in (True, False):
        torch.manual_seed(1)
        priced.clear()

        def reward(actions, drawn):
            priced.append(actions.clone())
            return (actions.sum(1) * (1.0 if drawn else 0.5),)

        losses[summed], _ = self_critical_loss(probabilities, reward, alpha=0.8, entropy_weight=0.0, summed=summed)
    drawn, greedy = priced
    explore = 0.8 * probabilities + 0.2 * (1 - probabilities)
    log_probability = (drawn * explore.log() + (1 - drawn) * (1 - explore).log()).sum(1)
    expected = -(log_probability * (drawn.sum(1) - 0.5 * greedy.sum(1))).sum()
    torch.testing.assert_close(losses[True], expected)
    torch.testing.assert_close(losses[False], expected / 5)


def test_compare_every_method_end_to_end(profiled, trained_run, cli):
    out = trained_run / "compare"
    arguments = ("compare", "--run", str(trained_run), "--lut", str(profiled), "--resolution", "32", "--workers", "0",
                 "--blockdrop-batch", BATCH, "--aig-batch", BATCH, "--blockdrop-curriculum-epochs", "1",
                 "--blockdrop-joint-epochs", "1",
                 "--aig-epochs", "1", "--oneshot-samples", "4", "--retrain", "--oneshot-retrain-points", "2",
                 "--measure", "1", "--min-time", "0.01")
    result = cli(*arguments)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out / "table.csv")
    assert set(frame["method"]) == {"mobilenetv2", "smallest", "oneshot", "oneshot-retrained", "blockdrop",
                                    "convnet-aig", "instanas", "instanas-search"}
    frontier, retrained = frame[frame["method"] == "oneshot"], frame[frame["method"] == "oneshot-retrained"]
    ends = sorted({0, len(frontier) - 1})
    assert list(retrained["point"]) == list(frontier["point"].iloc[ends]), "two points: the cheapest and the richest"
    assert np.allclose(retrained["lut_ms_mean"], frontier["lut_ms_mean"].iloc[ends])
    for point in frontier["point"]:
        metrics = trained_run / f"metrics-oneshot-{point.lstrip('#')}.csv"
        if point in set(retrained["point"]):
            assert len(pd.read_csv(metrics)) == 1, point
        else:
            assert not metrics.exists(), f"{point} is not re-trained"
    assert frame["images"].eq(LIMIT_VAL).all()
    scores = pd.read_csv(out / "oneshot.csv")
    settings = json.loads((out / "oneshot.settings.json").read_text())
    assert settings["scored_images"] == round(0.1 * LIMIT_TRAIN), "scored on the 10 % of training images held out"
    assert list(frontier["point"]) == [f"#{index}" for index in pareto_frontier(scores)["index"]], \
        "the frontier is chosen on the held-out scores"
    widths = frame[frame["method"] == "mobilenetv2"].set_index("point")
    assert list(widths.index) == ["0.4×", "1.0×", "1.4×"]
    table = load_table(profiled)
    mobilenetv2_ms = table.estimate(mobilenetv2_architecture(), table.default_mode)
    assert widths.loc["1.0×", "lut_ms_mean"] == pytest.approx(mobilenetv2_ms)
    assert widths.loc["1.4×", "lut_ms_mean"] > widths.loc["0.4×", "lut_ms_mean"]
    smallest = frame[frame["method"] == "smallest"].iloc[0]
    assert smallest["lut_ms_mean"] == pytest.approx(table.estimate(smallest_architecture(), table.default_mode))
    children = frame[frame["method"].str.startswith("oneshot")]
    assert (smallest["lut_ms_mean"] <= children["lut_ms_mean"] + 1e-9).all(), "no child runs fewer modules"
    assert load_checkpoint(trained_run / "smallest.pt")["settings"]["arch"] == format_architecture(
        smallest_architecture()), "trained as its own stage, on the smallest architecture"
    dynamic = frame[frame["method"].isin(["blockdrop", "instanas"])]
    search = frame[frame["method"] == "instanas-search"].set_index("point")
    for row in frame[frame["method"] == "instanas"].itertuples():  # the same controller picks the same networks
        same = search.loc["search epoch " + row.point.split(",")[0].removeprefix("epoch ")]
        assert (row.lut_ms_mean, row.lut_ms_std) == pytest.approx((same["lut_ms_mean"], same["lut_ms_std"]))
    assert (frame["measured_images"] > 0).all() and (frame["measured_ms_mean"] > 0).all()
    assert len(pd.read_csv(out / "oneshot.csv")) == 4
    assert frame["point"].str.startswith("search epoch").sum() == 2
    retrained_instanas = frame[frame["method"] == "instanas"]
    assert list(retrained_instanas["point"]) == ["epoch 0, re-trained", "epoch 1, re-trained"], \
        "spread re-trains five snapshots, first and last included: here both"
    finetuned = torch.load(trained_run / "finetune.pt", weights_only=True)
    assert finetuned["snapshot"] == "epoch-001.pt" and not (trained_run / "finetune-epoch-001.pt").exists(), \
        "the run's own finetune.pt is the last snapshot re-trained by the same recipe: reused, not trained again"
    assert len(pd.read_csv(trained_run / "metrics-finetune-epoch-000.csv")) == 1
    assert (dynamic["distinct_architectures"] >= 1).all()
    assert "| InstaNAS (re-trained) | epoch 0, re-trained |" in (out / "table.md").read_text()
    for name in ("mobilenetv2-0.4x", "mobilenetv2-1.4x", "blockdrop", "convnet-aig"):
        assert len(pd.read_csv(trained_run / f"metrics-{name}.csv")) >= 1
    last_cell_dropped = mobilenetv2_architecture()
    last_cell_dropped[DROPPABLE_CELLS[-1]] = False
    curriculum = pd.read_csv(trained_run / "metrics-blockdrop.csv").iloc[0]
    assert curriculum["phase"] == "curriculum"
    assert curriculum["val_lut_ms"] >= table.estimate(last_cell_dropped, table.default_mode) * (1 - 1e-5), \
        "in the curriculum's first epoch only the last cell may be dropped"
    assert "| BlockDrop |" in (out / "table.md").read_text()
    buckets = pd.read_csv(out / "buckets.csv")  # cluttered digits: every point per clutter bucket
    names = [f"{low}–{high}" for low, high in PROTOCOLS["cluttered-digits"].buckets()]
    for row in frame.itertuples():
        mine = buckets[(buckets["method"] == row.method) & (buckets["point"] == row.point)]
        assert list(mine["clutter"]) == names and mine["images"].sum() == LIMIT_VAL, row.point
        shown = mine[mine["images"] > 0]
        assert np.average(shown["accuracy"], weights=shown["images"]) == pytest.approx(row.accuracy)
        if row.method in ("mobilenetv2", "smallest", "oneshot", "oneshot-retrained"):  # one network for every image
            assert np.isnan(row.spearman_latency_vs_clutter), row.point
    assert "| BlockDrop | policy p > 0.5 |" in (out / "buckets.md").read_text()
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    trained = {path.stem.removeprefix("metrics-") for path in trained_run.glob("metrics-*.csv")}
    assert {"blockdrop", "convnet-aig", "mobilenetv2-0.4x", "smallest"} <= trained
    assert trained <= {path.name for path in (trained_run / "tb").iterdir()}, \
        "every stage compare trains writes its TensorBoard scalars beside train's"

    before = {path.name: path.stat().st_mtime_ns for path in out.glob("points-*.csv")}
    again = cli(*arguments)
    assert again.returncode == 0, again.stderr
    after = {path.name: path.stat().st_mtime_ns for path in out.glob("points-*.csv")}
    assert after == before, "finished work is reused"


def test_compare_refuses_bad_input_in_one_line(trained_run, tmp_path, cli):
    for arguments, message in [
        (("--run", str(tmp_path)), "not a training run folder"),
        (("--run", str(trained_run), "--resolution", "64"), "trains at 32 px, not 64"),
        (("--run", str(trained_run), "--method", "nope"), "unknown method 'nope'"),
        (("--run", str(trained_run), "--widths", "0.4,x"), "--widths"),
        (("--run", str(trained_run), "--method", "shufflenet"), "unknown method 'shufflenet'"),
        (("--run", str(trained_run), "--method", "resnet", "--resnet-depths", "20"), "--resnet-depths: 20 is not"),
        (("--run", str(trained_run), "--method", "shufflenet_v2", "--shufflenet-widths", "0.75"),
         "--shufflenet-widths: 0.75 is not"),
    ]:
        result = cli("compare", *arguments)
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_compare_tiny_settings_refuse_a_baseline_trained_otherwise(profiled, trained_run, cli):
    result = cli("compare", "--run", str(trained_run), "--lut", str(profiled), "--method", "mobilenetv2",
                 "--widths", "1.0", "--finetune-epochs", "3", *TINY[2:4])
    assert result.returncode == 2 and "other settings (finetune_epochs)" in result.stderr


@pytest.mark.parametrize("resolution", [32, 64])
def test_reference_networks_train_a_step_at_small_resolutions(resolution):
    """ShuffleNet v2 and ResNet, adapted below 224 px (3×3 stride-1 stem, no max-pool): a training step reaches
    every parameter with a finite gradient, from the stem to the classifier, and changes the outputs."""
    torch.manual_seed(0)
    images, labels = torch.randn(2, 3, resolution, resolution), torch.tensor([0, 1])
    for name in reference_names((0.5, 1.0, 1.5), (18, 50)):
        network = reference_network(name, resolution, 10).train()
        stem = network.conv1 if name.startswith("resnet") else network.conv1[0]
        assert stem.stride == (1, 1) and stem.kernel_size == (3, 3) and isinstance(network.maxpool, nn.Identity)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
        before = network(images)
        loss = nn.functional.cross_entropy(before, labels)
        optimizer.zero_grad()
        loss.backward()
        gradients = [p.grad for p in network.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in gradients), name
        assert stem.weight.grad.abs().sum() > 0 and network.fc.weight.grad.abs().sum() > 0, name
        optimizer.step()
        assert not torch.allclose(network(images), before), name
    full = reference_network("resnet18", 224, 1000)
    assert full.conv1.stride == (2, 2) and isinstance(full.maxpool, nn.MaxPool2d), "torchvision's own at 224 px"


def test_every_offered_reference_is_torchvisions_and_the_defaults_are_offered():
    """The CLI's torch-free lists of widths and depths and torchvision's builders are one list: each offered name
    builds torchvision's network of that name, and the defaults are among them."""
    from torchvision import models

    from instanas.baselines.settings import (
        RESNET_DEPTHS,
        SHUFFLENET_WIDTHS,
        TORCHVISION_RESNET_DEPTHS,
        TORCHVISION_SHUFFLENET_WIDTHS,
    )

    offered = reference_names(TORCHVISION_SHUFFLENET_WIDTHS, TORCHVISION_RESNET_DEPTHS)
    assert set(offered) <= set(models.list_models(module=models))
    assert set(reference_names()) <= set(offered) and set(SHUFFLENET_WIDTHS) <= set(TORCHVISION_SHUFFLENET_WIDTHS)
    assert set(RESNET_DEPTHS) <= set(TORCHVISION_RESNET_DEPTHS)
    assert [p.numel() for p in reference_network("shufflenet_v2_x1_0", 224, 1000).parameters()] == [
        p.numel() for p in models.shufflenet_v2_x1_0().parameters()]


def test_compare_fine_tunes_instanas_from_the_search_when_asked(profiled, trained_run, cli, tmp_path):
    """``--instanas-from-search``: the snapshot's policy fine-tuned from the search's meta-graph at its own rate, in a
    stage of its own: after its two Adam steps at 0.001 no weight is more than a few steps from the snapshot's (a
    network re-trained from scratch starts from another random draw)."""
    run = tmp_path / "run"  # the trained run's checkpoints, linked: compare only adds files beside them
    run.mkdir()
    shutil.copy(trained_run / "run.json", run)
    for name in ("pretrain.pt", "search.pt", "snapshots", "mobilenetv2.pt"):
        (run / name).symlink_to(trained_run / name)
    result = cli("compare", "--run", str(run), "--lut", str(profiled), "--workers", "0", "--method", "instanas",
                 "--retrain-snapshots", "1", "--instanas-from-search", "--measure", "0", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "epoch 1, fine-tuned from the search" in set(pd.read_csv(tmp_path / "out" / "table.csv")["point"])
    state = load_checkpoint(run / "finetune-epoch-001-from-search.pt")
    assert state["settings"]["from_scratch"] is False and state["settings"]["finetune_lr"] == 0.001
    searched = load_checkpoint(run / "snapshots" / "epoch-001.pt")["metagraph"]
    moved = max((state["metagraph"][key] - value).abs().max().item() for key, value in searched.items()
                if value.is_floating_point() and "running" not in key)
    assert moved < 0.01, moved
    assert not (run / "finetune-epoch-001.pt").exists(), "the recipe's re-training is another stage"


def test_compare_reference_networks_are_measured_on_the_tables_scale(profiled, trained_run, cli):
    """ShuffleNet v2 and ResNet rows: accuracy, no LUT estimate, measured latency; the frontier then uses measured
    latency for every method. The same paired path measures the MobileNetV2-like child (the reference network's
    architecture) at the table's anchor: the references' milliseconds are the table's."""
    out = trained_run / "compare-references"
    result = cli("compare", "--run", str(trained_run), "--lut", str(profiled), "--workers", "0",
                 "--method", "mobilenetv2", "--widths", "1.0", "--method", "shufflenet_v2", "--shufflenet-widths",
                 "0.5", "--method", "resnet", "--resnet-depths", "18", "--measure", "1", "--min-time", "0.05",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out / "table.csv").set_index("point")
    references = frame[frame["method"].isin(["shufflenet_v2", "resnet"])]
    assert list(references.index) == ["0.5×", "18"] and references["lut_ms_mean"].isna().all()
    assert (references["measured_ms_mean"] > 0).all() and references["images"].eq(LIMIT_VAL).all()
    assert len(pd.read_csv(trained_run / "metrics-resnet18.csv")) >= 1
    assert "outside the space" in (out / "table.md").read_text()
    table = load_table(profiled)
    assert table.speed_exponent == 0
    assert frame.loc["1.0×", "measured_ms_mean"] == pytest.approx(table.anchor_ms, rel=0.15), \
        "the MobileNetV2-like child is the reference's own architecture: paired with it, it reads the table's anchor"
    assert references.loc["18", "measured_ms_mean"] > references.loc["0.5×", "measured_ms_mean"], \
        "ResNet-18 at 32 px costs more than ShuffleNet v2 0.5x on any CPU"


def test_measure_and_export_take_reference_names(profiled, tmp_path, cli):
    measured = cli("measure", "-r", "32", "-a", "shufflenet_v2_x0_5", "--paired", "--lut", str(profiled),
                   "--min-time", "0.05", "--json")
    assert measured.returncode == 0, measured.stderr
    payload = json.loads(measured.stdout)
    assert payload["arch"] == "shufflenet_v2_x0_5" and payload["paired_ms"] > 0
    assert not any(key.startswith("estimate_") for key in payload), "outside the space: no estimate"
    unknown = cli("measure", "-r", "32", "-a", "resnet7")
    assert unknown.returncode == 2 and "unknown network 'resnet7'" in unknown.stderr
    assert unknown.stderr.count("\n") == 1
    pytest.importorskip("onnxruntime")
    exported = cli("export", "-r", "32", "-a", "resnet18", str(tmp_path / "resnet18.onnx"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "resnet18.onnx").stat().st_size > 1e6 and "resnet18 @ 32 px" in exported.stdout
