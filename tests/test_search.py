"""The search learns in the right direction: rewards, the self-critical advantage, batch norm, resume checks."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from instanas.ablation import retrained_policy
from instanas.batchnorm import recalibrate_batch_norm, recalibrated
from instanas.controller import Controller, deterministic_policy, encouraged
from instanas.data import load_dataset
from instanas.evaluate import evaluate_run
from instanas.metagraph import MetaGraph
from instanas.reward import (
    LatencyBounds,
    LatencyReward,
    falling_latency_reward,
    graded_latency_reward,
    instance_reward,
    lut_latency,
    mean_drawn_latency,
)
from instanas.space import full_architecture, sample_architectures, smallest_architecture, with_default_modules
from instanas.training.checkpoints import load_checkpoint, save_checkpoint
from instanas.training.loop import self_critical_loss
from lut.store import load_table, save_calibrated

ALPHA = 0.8


@pytest.fixture(scope="module")
def digits():
    dataset = load_dataset("digits", None, train=False)
    images, labels = zip(*(dataset[i] for i in range(16)))
    return torch.stack(images), torch.tensor(labels)


@pytest.fixture(scope="module")
def table(profiled):
    return load_table(profiled)


def _train_controller(make_reward, images, steps: int = 12):
    """A fresh controller trained ``steps`` times on one batch; its mean probability and greedy LUT latency before
    and after, priced by ``make_reward(probabilities)(actions, drawn) -> (per-image reward,)``."""
    torch.manual_seed(0)
    controller = Controller(32)
    optimizer = torch.optim.Adam(controller.parameters(), lr=0.01)

    def policy() -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            probabilities = controller.eval()(images)
        return float(probabilities.mean()), deterministic_policy(probabilities)

    before = policy()
    for _ in range(steps):
        probabilities = controller.train()(images)
        loss, _ = self_critical_loss(probabilities, make_reward(probabilities), ALPHA, entropy_weight=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, policy()


def _latency_only(table, kind: str, bounds: LatencyBounds, epoch: int):
    """Every prediction counted right, so only R_A speaks, priced as the search prices it."""
    latency_reward = LatencyReward.build(kind, table, bounds, ALPHA)

    def make_reward(probabilities):
        price = latency_reward.pricer(table, probabilities, epoch, ALPHA)
        return lambda actions, drawn: (instance_reward(torch.ones(len(actions), dtype=torch.bool),
                                                       price(with_default_modules(actions), drawn)[0]),)

    return make_reward


def _below_half(table):
    """The graded reward with U at half the full meta-graph, about where a fresh controller's greedy policy stands."""
    half = 0.5 * table.estimate(full_architecture(), mode=table.default_mode)
    bounds = LatencyBounds(table.estimate(smallest_architecture(), mode=table.default_mode), half, half, epochs=1)
    return _latency_only(table, "graded", bounds, 0)


def test_graded_latency_reward_lowers_probability_and_latency(table, digits):
    images, _ = digits
    (p_before, greedy_before), (p_after, greedy_after) = _train_controller(_below_half(table), images)
    latency_before = lut_latency(table, greedy_before, table.default_mode).mean()
    latency_after = lut_latency(table, greedy_after, table.default_mode).mean()
    assert p_after < p_before - 0.05, (p_before, p_after)
    assert latency_after < 0.9 * latency_before, (float(latency_before), float(latency_after))


def test_paper_reward_is_silent_once_drawn_children_are_above_the_upper_bound(table, digits):
    """The first cause of issue 13: drawn children (about half the modules) are all slower than U_end, so R_A = 0."""
    images, _ = digits
    bounds = LatencyBounds.from_table(table, epochs=5, end_fraction=0.9)  # not empty at one thread either
    (p_before, _), (p_after, _) = _train_controller(_latency_only(table, "paper", bounds, 4), images)
    assert abs(p_after - p_before) < 0.02, (p_before, p_after)


def test_an_accuracy_only_reward_does_not_make_the_policy_cheaper(table, digits):
    """Right or wrong by a real (untrained) meta-graph's prediction, no latency term: no systematic drift."""
    images, labels = digits
    torch.manual_seed(0)
    metagraph = MetaGraph(32).eval()

    def reward(actions, drawn):
        with torch.no_grad():
            correct = metagraph(images, with_default_modules(actions)).argmax(1) == labels
        return (torch.where(correct, 10.0, -10.0),)

    (p_before, _), (p_after, _) = _train_controller(lambda probabilities: reward, images)
    latency_only = _train_controller(_below_half(table), images)
    drop = latency_only[0][0] - latency_only[1][0]
    assert p_before - p_after < drop / 3, (p_before, p_after, drop)


def test_self_critical_advantage_favours_drawn_actions_that_beat_the_greedy_policy():
    """Reward 10 for images whose drawn child runs module (0, 0), 0 for the greedy policy: the loss's gradient
    raises that module's probability exactly where it was drawn on, and lowers it where it was drawn off."""
    torch.manual_seed(0)
    probabilities = torch.full((64, 17, 5), 0.5, requires_grad=True)
    drawn_on = []

    def reward(actions, drawn):
        if not drawn:
            return (torch.zeros(len(actions)),)
        drawn_on.append(actions[:, 0, 0].bool())
        return (10.0 * actions[:, 0, 0],)

    loss, _ = self_critical_loss(probabilities, reward, ALPHA, entropy_weight=0.0)
    loss.backward()
    on = drawn_on[0]
    assert 0 < on.sum() < len(on)
    gradient = probabilities.grad[:, 0, 0]
    assert (gradient[on] < 0).all(), "descent raises p where the rewarded module was drawn"
    assert (gradient[~on] == 0).all(), "zero advantage where it was not: no push either way"


def test_graded_reward_is_the_paper_quadratic_inside_and_keeps_falling_outside():
    z = torch.tensor([4.0, 5.5, 7.0, 10.0, 13.0, 16.0, 1.0])
    values = graded_latency_reward(z, centre=7.0, half_width=3.0)
    expected = [0.0, 0.75, 1.0, 0.0, np.exp(-2.0) - 1, np.exp(-4.0) - 1, np.exp(-2.0) - 1]
    torch.testing.assert_close(values, torch.tensor(expected, dtype=torch.float32))
    far = graded_latency_reward(torch.linspace(10.5, 22, 40), 7.0, 3.0)  # where float32 still tells them apart
    assert (far.diff() < 0).all(), "above the interval a faster child always earns more"
    assert (far > -1).all(), "a right answer never earns less than a wrong one"
    slope = (graded_latency_reward(torch.tensor([10.001]), 7.0, 3.0)
             - graded_latency_reward(torch.tensor([9.999]), 7.0, 3.0))
    assert float(slope) / 0.002 == pytest.approx(-2 / 3, rel=0.01), "the slope is continuous at the bound"


def test_falling_reward_pays_more_for_every_cheaper_network():
    """BlockDrop's form: 1 at L, 1 − u² up to U, then the graded tail; no latency where a slower child earns more."""
    z = torch.tensor([1.0, 4.0, 5.5, 7.0, 10.0, 13.0])
    values = falling_latency_reward(z, lower=4.0, width=6.0)
    expected = [1.0, 1.0, 1 - 0.25**2, 1 - 0.5**2, 0.0, np.exp(-1.0) - 1]
    torch.testing.assert_close(values, torch.tensor(expected, dtype=torch.float32))
    along = falling_latency_reward(torch.linspace(4.1, 16, 60), 4.0, 6.0)
    assert (along.diff() < 0).all(), "a faster child always earns more"
    assert (along > -1).all(), "a right answer never earns less than a wrong one"


def test_falling_reward_lowers_latency_where_the_graded_one_raises_it(table, digits):
    """Bounds whose middle lies above a fresh controller's greedy network: the graded reward pays it to grow towards
    the middle, the falling one to shrink — the difference that lets an easy image run cheaper than a hard one."""
    images, _ = digits
    full = table.estimate(full_architecture(), mode=table.default_mode)
    bounds = LatencyBounds(table.estimate(smallest_architecture(), mode=table.default_mode), 1.5 * full, 1.5 * full,
                           epochs=1)
    (p_before, _), (p_graded, _) = _train_controller(_latency_only(table, "graded", bounds, 0), images)
    _, (p_falling, _) = _train_controller(_latency_only(table, "falling", bounds, 0), images)
    assert p_graded > p_before + 0.02, (p_before, p_graded)
    assert p_falling < p_before - 0.05, (p_before, p_falling)


def test_graded_reward_prices_drawn_children_around_the_greedy_policy(table):
    """A drawn child is priced at the greedy latency plus its deviation from what the policy draws on average, so a
    policy whose greedy network sits at the interval's centre is at the top of the curve however dense its drawn
    children are; the paper prices the drawn child itself, and misses the centre by the encouragement's shift."""
    bounds = LatencyBounds.from_table(table, epochs=5, end_fraction=0.9)
    graded, paper = (LatencyReward.build(kind, table, bounds, ALPHA) for kind in ("graded", "paper"))
    centre = (bounds.upper(0) + bounds.lower) / 2
    torch.manual_seed(0)
    probabilities = torch.rand(256, 17, 5) * 0.4 + 0.05  # undecided, mostly "off": sparse greedy, dense drawn
    greedy_ms = lut_latency(table, deterministic_policy(probabilities), table.default_mode)
    explore = encouraged(probabilities, ALPHA)
    mean_ms = mean_drawn_latency(table, explore, samples=64)
    drawn = torch.bernoulli(explore)
    drawn_ms = lut_latency(table, with_default_modules(drawn), table.default_mode)
    assert float((drawn_ms - greedy_ms).mean()) > 1.0, "drawn children are far denser than the greedy ones"
    at_centre = graded.drawn(drawn_ms, 0, torch.full_like(greedy_ms, centre), mean_ms)
    assert float(at_centre.mean()) > 0.8, "the greedy policy at the centre: near the top of the curve"
    shifted = graded.greedy(drawn_ms - mean_ms + centre, 0)
    torch.testing.assert_close(at_centre, shifted)
    torch.testing.assert_close(paper.drawn(drawn_ms, 0, greedy_ms, mean_ms), paper.greedy(drawn_ms, 0))
    assert float(mean_ms.mean()) == pytest.approx(float(drawn_ms.mean()), rel=0.03), "the mean of what is drawn"


def test_batch_norm_recalibration_gives_sane_losses_for_dense_and_sparse_children(digits):
    """Statistics gathered on sparse children misdescribe dense summing cells (activations grow k-fold per cell);
    recalibrated for the architecture evaluated, dense and sparse both give finite, sane losses."""
    images, labels = digits
    torch.manual_seed(0)
    metagraph = MetaGraph(32, merge="sum")
    sparse = lambda x: torch.as_tensor(sample_architectures(len(x), keep=0.1, seed=0))  # noqa: E731
    dense = lambda x: torch.as_tensor(full_architecture()).expand(len(x), -1, -1)  # noqa: E731
    recalibrate_batch_norm(metagraph, [images], sparse)
    metagraph.eval()

    def loss(choose) -> float:
        with torch.no_grad():
            return float(F.cross_entropy(metagraph(images, choose(images)), labels))

    stale = {"dense": loss(dense), "sparse": loss(sparse)}
    recalibrated_losses = {}
    for name, choose in (("dense", dense), ("sparse", sparse)):
        with recalibrated(metagraph, [images, images.flip(-1)], choose):
            recalibrated_losses[name] = loss(choose)
    assert all(np.isfinite(value) and value < 5 for value in recalibrated_losses.values()), recalibrated_losses
    assert stale["dense"] > 10 * recalibrated_losses["dense"], "without recalibration the dense child's loss explodes"
    assert loss(dense) == stale["dense"] and loss(sparse) == stale["sparse"], "the replaced statistics are restored"


def test_resumed_search_refuses_another_lut_or_optimiser(trained_run, profiled, tmp_path, cli):
    from conftest import EPOCHS, TINY

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    other = save_calibrated(load_table(profiled), {"scale": 1.0, "per_module_ms": 0.0, "per_network_ms": 0.0,
                                                    "children": 0}, tmp_path / "store")
    common = ("train", *TINY, *EPOCHS, "--stage", "search", "--resume", "--out", str(run))
    refused = cli(*common, "--lut", str(other.path))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "search.pt: saved with other settings (lut" in refused.stderr
    momentum = cli(*common, "--lut", str(profiled), "--search-momentum", "0.5")
    assert momentum.returncode == 2 and "(search_momentum)" in momentum.stderr
    same = cli(*common, "--lut", str(profiled))
    assert same.returncode == 0, same.stderr


def test_ablation_tabulates_runs_against_the_first(trained_run, profiled, tmp_path, cli):
    """Two run folders, the second with another reward and a shorter search: one row each, the changes named, the
    search plotted; pre-training's random children and, on cluttered digits, the Spearman with clutter reported; a
    policy re-trained by ``compare`` (``finetune-epoch-NNN.pt`` of the last snapshot) counts as the re-trained one, and
    its settings are compared with those of a run's own re-training (``finetune.pt``); a checkpoint saved before a
    setting existed reads as that setting's default."""
    reference = tmp_path / trained_run.name
    shutil.copytree(trained_run, reference)
    older = load_checkpoint(reference / "search.pt")
    del older["settings"]["controller_input"]  # as saved before --controller-input
    save_checkpoint(reference / "search.pt", older)
    trained_run = reference
    other = tmp_path / "paper-reward"
    other.mkdir()
    from conftest import EPOCHS, TINY

    for name in ("run.json", "pretrain.pt", "metrics-pretrain.csv"):  # the same pre-training, searched again
        shutil.copy(trained_run / name, other / name)
    retrained = cli("train", *TINY, *EPOCHS, "--search-epochs", "1", "--stage", "search", "--reward", "paper",
                    "--controller-input", "standardized",
                    "--lut", str(profiled), "--out", str(other))
    assert retrained.returncode == 0, retrained.stderr
    out = tmp_path / "ablation"
    result = cli("ablation", "--run", str(trained_run), "--run", str(other), "--baseline",
                 str(trained_run / "mobilenetv2.pt"), "--lut", str(profiled), "--out", str(out))
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out / "ablation.csv")
    assert list(frame["changed"]) == ["—", "controller_input standardized, reward paper, search_epochs 1"], \
        "every setting that differs is named"
    assert frame.loc[0, "retrained_accuracy"] >= 0 and np.isnan(frame.loc[1, "retrained_accuracy"])
    assert frame["greedy_last_ms"].gt(0).all() and (out / "search.png").read_bytes()[:4] == b"\x89PNG"
    pretraining = pd.read_csv(trained_run / "metrics-pretrain.csv")["val_accuracy"]
    assert (frame["pretrain_last_accuracy"] == pretraining.iloc[-1]).all()
    assert (frame["pretrain_best_accuracy"] == pretraining.max()).all()
    assert -1 <= frame.loc[0, "spearman_vs_clutter"] <= 1 or np.isnan(frame.loc[0, "spearman_vs_clutter"])
    markdown = (out / "ablation.md").read_text()
    assert "| paper-reward | controller_input standardized, reward paper, search_epochs 1 |" in markdown
    assert "Spearman vs clutter" in markdown
    snapshots = pd.read_csv(out / "snapshots.csv")
    for run in (trained_run, other):
        assert len(snapshots[snapshots["run"] == run.name]) == len(list((run / "snapshots").glob("epoch-*.pt")))
    last = snapshots[snapshots["run"] == trained_run.name].iloc[-1]
    table = load_table(profiled)
    report = evaluate_run(trained_run, table, checkpoint=trained_run / "snapshots" / f"epoch-{last['epoch']:03d}.pt",
                          measure=0, out=tmp_path / "snapshot-evaluation")  # the same policy through the meta-graph
    assert last["greedy_ms"] + table.controller_ms == pytest.approx(report["lut_ms"]["mean"], rel=1e-5)
    if report["spearman_latency_vs_clutter"] is None:
        assert np.isnan(last["spearman_vs_clutter"])
    else:
        assert last["spearman_vs_clutter"] == pytest.approx(report["spearman_latency_vs_clutter"])
    buckets = [column for column in snapshots if column.startswith("ms_clutter_")]
    assert len(buckets) >= 2, "one column per clutter bucket"
    tolerance = 1e-4  # the mean of all images lies between the means of the buckets that partition them
    assert (snapshots[buckets].min(axis=1) <= snapshots["greedy_ms"] + tolerance).all()
    assert (snapshots[buckets].max(axis=1) >= snapshots["greedy_ms"] - tolerance).all()

    shutil.copy(trained_run / "finetune.pt", other / "finetune-epoch-000.pt")  # as compare names its re-training
    own = tmp_path / "own-finetune"  # the same search, re-trained by its own finetune stage at another recipe
    shutil.copytree(other, own, ignore=shutil.ignore_patterns("finetune-epoch-*"))
    finetuned = cli("train", *TINY, *EPOCHS, "--search-epochs", "1", "--stage", "finetune", "--reward", "paper",
                    "--finetune-lr", "0.005", "--from-search", "--lut", str(profiled), "--out", str(own))
    assert finetuned.returncode == 0, finetuned.stderr
    again = cli("ablation", "--run", str(other), "--run", str(own), "--run", str(trained_run), "--baseline",
                str(trained_run / "mobilenetv2.pt"), "--lut", str(profiled), "--out", str(out))
    assert again.returncode == 0, again.stderr
    frame = pd.read_csv(out / "ablation.csv")
    assert frame.loc[0, "retrained_accuracy"] == frame.loc[2, "retrained_accuracy"], "the same policy, evaluated"
    from_search = other / "finetune-epoch-000-from-search.pt"  # compare --instanas-from-search names it so
    (other / "finetune-epoch-000.pt").rename(from_search)
    assert retrained_policy(other, search_epochs=1) == from_search
    assert frame.loc[1, "changed"] == "finetune_lr 0.005, from_scratch False", (
        "re-training settings differ from those of compare's re-training")
