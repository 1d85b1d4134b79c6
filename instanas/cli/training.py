"""Commands that train and compare: train, evaluate, compare, ablation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from instanas.baselines.settings import (
    DEFAULT_METHODS,
    RESNET_DEPTHS,
    SHUFFLENET_WIDTHS,
    WIDTHS,
    BlockDropSettings,
    CompareOptions,
    ConvNetAIGSettings,
    parse_widths,
)
from instanas.cli.app import app
from instanas.cli.options import (
    AllowForeign,
    CellMerge,
    FinetuneEpochs,
    LutPath,
    PretrainEpochs,
    SearchEpochs,
    TensorBoard,
    interruptible,
)
from instanas.errors import InstaNASError
from instanas.training.config import STAGES, TrainConfig


@app.command()
def train(
    dataset: Annotated[str, typer.Option("--dataset", help="cifar10, cifar100, tinyimagenet, imagenet, digits, cluttered-digits(-64), cluttered-mnist(-64), or imagefolder (your own train/<class>/ and val/<class>/ images).")] = TrainConfig.dataset,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Dataset folder (not needed for the digits data sets).")] = TrainConfig.data_dir,
    resolution: Annotated[int | None, typer.Option("--resolution", "-r", help="imagefolder's resolution: 32, 64 or 224 (the named data sets have their own).")] = TrainConfig.resolution,
    stage: Annotated[str, typer.Option("--stage", help="pretrain, search, finetune, mobilenetv2 or all.")] = "all",
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default runs/train-<dataset>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stage from its last finished epoch.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (under torchrun: one GPU per process).")] = TrainConfig.device,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data-loading processes.")] = TrainConfig.workers,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights, sampling and data order.")] = TrainConfig.seed,
    limit_train: Annotated[int | None, typer.Option("--limit-train", min=1, help="Use a fixed subset of N training images.")] = TrainConfig.limit_train,
    limit_val: Annotated[int | None, typer.Option("--limit-val", min=1, help="Use a fixed subset of N validation images.")] = TrainConfig.limit_val,
    holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.99, help="Share of the training images no "
                                           "stage trains on (the one-shot baseline chooses its frontier on them).")] = TrainConfig.holdout,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    cell_merge: CellMerge = TrainConfig.cell_merge,
    memory_format: Annotated[str, typer.Option("--memory-format", help="channels_last (default: faster on CPUs) or contiguous (PyTorch's default layout).")] = TrainConfig.memory_format,
    fused_optimizer: Annotated[bool, typer.Option("--fused-optimizer/--loop-optimizer", help="Adam's and SGD's fused kernel (one pass over every parameter) or PyTorch's CPU default, a loop over the parameter tensors.")] = TrainConfig.fused_optimizer,
    pretrain_epochs: PretrainEpochs = TrainConfig.pretrain_epochs,
    pretrain_lr: Annotated[float, typer.Option("--pretrain-lr", help="SGD learning rate of pre-training.")] = TrainConfig.pretrain_lr,
    pretrain_batch: Annotated[int, typer.Option("--pretrain-batch", min=1, help="Batch size of pre-training.")] = TrainConfig.pretrain_batch,
    momentum: Annotated[float, typer.Option("--momentum", help="SGD momentum (meta-graph).")] = TrainConfig.momentum,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="SGD weight decay (meta-graph).")] = TrainConfig.weight_decay,
    final_drop_path: Annotated[float, typer.Option("--final-drop-path", help="(Mean) drop-path rate reached at the end of pre-training.")] = TrainConfig.final_drop_path,
    pretrain_schedule: Annotated[str, typer.Option("--pretrain-schedule", help="shrinking (default: per-image drop rates, cosine lr) or paper (one rate, step decay).")] = TrainConfig.pretrain_schedule,
    pretrain_init: Annotated[str, typer.Option("--pretrain-init", help="scratch (default, the paper) or mobilenetv2: start from the run's trained MobileNetV2 stage (trained first).")] = TrainConfig.pretrain_init,
    pretrain_optimizer: Annotated[str, typer.Option("--pretrain-optimizer", help="sgd (default, the paper: Nesterov momentum, weight decay) or adam (re-training's optimiser, no weight decay) at --pretrain-lr.")] = TrainConfig.pretrain_optimizer,
    warm_start: Annotated[str | None, typer.Option("--warm-start", help="A run folder of the same classes whose pretrain.pt starts pre-training and whose mobilenetv2.pt starts stage mobilenetv2; any resolution (e.g. a 32 px run to train at 64 px).")] = TrainConfig.warm_start,
    search_epochs: SearchEpochs = TrainConfig.search_epochs,
    controller_lr: Annotated[float, typer.Option("--controller-lr", help="Adam learning rate of the controller.")] = TrainConfig.controller_lr,
    metagraph_lr: Annotated[float, typer.Option("--metagraph-lr", help="SGD learning rate of the meta-graph epochs of the search (the authors': 0.001).")] = TrainConfig.metagraph_lr,
    search_momentum: Annotated[float, typer.Option("--search-momentum", min=0.0, help="SGD momentum of the meta-graph epochs of the search (the authors': 0).")] = TrainConfig.search_momentum,
    search_weight_decay: Annotated[float, typer.Option("--search-weight-decay", min=0.0, help="SGD weight decay of the meta-graph epochs of the search (the authors': 0).")] = TrainConfig.search_weight_decay,
    search_batch: Annotated[int, typer.Option("--search-batch", min=1, help="Batch size of the search.")] = TrainConfig.search_batch,
    reward: Annotated[str, typer.Option("--reward", help="Latency reward: graded (default), paper (eq. 2 as published) or falling (cheaper always pays, BlockDrop's form); see docs/training.md.")] = TrainConfig.reward,
    alpha: Annotated[float, typer.Option("--alpha", help="Encouragement α: p' = α·p + (1 − α)(1 − p).")] = TrainConfig.alpha,
    entropy_weight: Annotated[float, typer.Option("--entropy-weight", help="Weight of the entropy term.")] = TrainConfig.entropy_weight,
    controller_input: Annotated[str, typer.Option("--controller-input", help="What the controller sees: image (default) or standardized (each image at zero mean and unit variance: brightness taken out).")] = TrainConfig.controller_input,
    controller_width: Annotated[float, typer.Option("--controller-width", min=0.01, help="Multiplier of the controller's channel widths (its capacity; the LUT times the default's).")] = TrainConfig.controller_width,
    controller_downsample: Annotated[int, typer.Option("--controller-downsample", min=1, help="Average-pool the controller's input by this factor (2: a 32 px image seen at 16 px).")] = TrainConfig.controller_downsample,
    reward_accuracy: Annotated[str, typer.Option("--reward-accuracy", help="What eq. 2's accuracy term reads: correct (default, the paper: right or wrong) or confidence (the drawn child's probability of the right class, eq. 2's expectation).")] = TrainConfig.reward_accuracy,
    reward_correct: Annotated[float, typer.Option("--reward-correct", help="R_T of a correct prediction (R = R_T·R_A).")] = TrainConfig.reward_correct,
    reward_wrong: Annotated[float, typer.Option("--reward-wrong", help="R of a wrong prediction.")] = TrainConfig.reward_wrong,
    upper_start: Annotated[float, typer.Option("--upper-start", help="U_0 as a fraction of the full meta-graph's LUT latency.")] = TrainConfig.upper_start,
    upper_end: Annotated[float, typer.Option("--upper-end", help="Last U_t as a fraction of the MobileNetV2-like latency.")] = TrainConfig.upper_end,
    finetune_epochs: FinetuneEpochs = TrainConfig.finetune_epochs,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr", help="Adam learning rate of re-training (cosine annealed).")] = TrainConfig.finetune_lr,
    finetune_batch: Annotated[int, typer.Option("--finetune-batch", min=1, help="Batch size of re-training.")] = TrainConfig.finetune_batch,
    snapshot: Annotated[int | None, typer.Option("--snapshot", min=0, help="Search epoch whose controller to fine-tune (default: last).")] = TrainConfig.snapshot,
    from_scratch: Annotated[bool, typer.Option("--from-scratch/--from-search", help="Re-train the meta-graph from scratch (paper) or from the search's weights.")] = TrainConfig.from_scratch,
    tensorboard: TensorBoard = True,
) -> None:
    """Train InstaNAS: pre-train the meta-graph, search the controller, fine-tune its policy; and the MobileNetV2 baseline."""
    from instanas.training.stages import run_stage

    if stage != "all" and stage not in STAGES:
        raise InstaNASError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)} or all)")
    values = locals()
    config = TrainConfig(**{field.name: values[field.name] for field in dataclasses.fields(TrainConfig)})
    stages = [stage] if stage != "all" else sorted(STAGES, key=lambda name: (
        name != "mobilenetv2" if pretrain_init == "mobilenetv2" else 0))  # the start of pre-training goes first
    out = out or Path("runs") / f"train-{dataset}"
    table = None
    if "search" in stages:
        from instanas.data import dataset_info
        from lut.store import default_store, resolve_table

        table = resolve_table(dataset_info(dataset, resolution, data_dir).resolution, path=lut, store=default_store(), threads=None,
                              allow_foreign=allow_foreign_lut, merge=cell_merge, backend=None)
    for name in stages:
        with interruptible(f"finished epochs are kept in {out}; continue with --stage {name} --resume"):
            history = run_stage(name, config, out, resume=resume, table=table, tensorboard=tensorboard)
        last = history[-1] if history else {}
        figures = ", ".join(f"{key} {value:.4g}" for key, value in last.items() if key.startswith("val_"))
        typer.echo(f"{name}: {len(history)} epochs in {out}; last epoch: {figures}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="The training run folder.", file_okay=False)],
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="finetune.pt (default) or a search snapshot.")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Dataset folder, if it moved since training.")] = None,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    measure: Annotated[int, typer.Option("--measure", min=0, help="Measure the N most frequent architectures (0: LUT only).")] = 20,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timing per measured network.")] = 0.2,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default <run>/evaluation).")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="MobileNetV2 checkpoint to compare with (default <run>/mobilenetv2.pt).")] = None,
) -> None:
    """Accuracy, chosen architectures and per-image latency (LUT and measured, controller included) vs MobileNetV2."""
    from instanas.evaluate import evaluate_run
    from instanas.training.checkpoints import read_run
    from lut.store import default_store, resolve_table

    saved = read_run(run)
    table = resolve_table(saved["resolution"], path=lut, store=default_store(), threads=None,
                          allow_foreign=allow_foreign_lut, merge=saved["cell_merge"], backend=None)
    report = evaluate_run(run, table, checkpoint=checkpoint, data_dir=data_dir, measure=measure, min_run_time=min_time,
                          out=out, baseline=baseline)
    lines = [
        f"accuracy {100 * report['accuracy']:.2f} % on {report['images']} {report['dataset']} images, "
        f"{report['distinct_architectures']} distinct architectures",
        f"latency (LUT, controller included): {report['lut_ms']['mean']:.2f} ± {report['lut_ms']['std']:.2f} ms",
    ]
    if "measured_ms" in report:
        measured = report["measured_ms"]
        lines.append(f"latency (measured, {100 * measured['images_covered']:.0f} % of images): "
                     f"{measured['mean']:.2f} ± {measured['std']:.2f} ms")
    if "mobilenetv2" in report:
        versus = report["mobilenetv2"]
        spearman = versus["spearman_latency_vs_baseline_confidence"]
        lines.append(f"MobileNetV2 1.0×: accuracy {100 * versus['accuracy']:.2f} %, {versus['lut_ms']:.2f} ms (LUT); "
                     f"InstaNAS / MobileNetV2 latency {versus['instanas_lut_ms_ratio']:.3f}; Spearman(latency, "
                     f"baseline confidence) {'undefined' if spearman is None else f'{spearman:+.3f}'}")
    if "by_clutter" in report:
        spearman = report["spearman_latency_vs_clutter"]
        lines += [f"clutter {row['clutter']} ({row['images']} images): accuracy {100 * row['accuracy']:.1f} %, "
                  f"{row['lut_ms_mean']:.2f} ms (LUT)" for row in report["by_clutter"] if row["images"]]
        lines.append(f"Spearman(latency, clutter) {'undefined' if spearman is None else f'{spearman:+.3f}'}")
    typer.echo("\n".join(lines) + f"\nreport: {(out or run / 'evaluation') / 'report.json'}")


@app.command()
def compare(
    run: Annotated[Path, typer.Option("--run", help="The training run folder (its data, pre-training and search).", file_okay=False)],
    resolution: Annotated[int | None, typer.Option("--resolution", "-r", help="Check that the run trains at this resolution.")] = None,
    method: Annotated[list[str] | None, typer.Option("--method", help="mobilenetv2, smallest (the space's smallest architecture re-trained), oneshot, blockdrop, convnet-aig, instanas (the default: all six), shufflenet_v2, resnet; may be repeated.")] = None,
    widths: Annotated[str, typer.Option("--widths", help="MobileNetV2 width multipliers, comma-separated.")] = ",".join(f"{width:g}" for width in WIDTHS),
    shufflenet_widths: Annotated[str, typer.Option("--shufflenet-widths", help="ShuffleNet v2 widths (--method shufflenet_v2): 0.5, 1.0, 1.5, 2.0.")] = ",".join(f"{width:g}" for width in SHUFFLENET_WIDTHS),
    resnet_depths: Annotated[str, typer.Option("--resnet-depths", help="ResNet depths (--method resnet): 18, 34, 50, 101, 152.")] = ",".join(map(str, RESNET_DEPTHS)),
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Dataset folder, if it moved since training.")] = None,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    oneshot_samples: Annotated[int, typer.Option("--oneshot-samples", min=1, help="Children the one-shot baseline scores on the held-out images (batch norm re-estimated for each).")] = CompareOptions.oneshot_samples,
    retrain: Annotated[bool, typer.Option("--retrain", help="Re-train one-shot frontier points (cheapest to richest) from scratch.")] = CompareOptions.retrain,
    oneshot_retrain_points: Annotated[int, typer.Option("--oneshot-retrain-points", min=1, help="How many one-shot frontier points --retrain trains, spread over latency.")] = CompareOptions.oneshot_retrain_points,
    retrain_snapshots: Annotated[str, typer.Option("--retrain-snapshots", help="InstaNAS search snapshots to re-train with the recipe: spread (five, first and last included), all, none, or epochs like 0,5,19.")] = CompareOptions.retrain_snapshots,
    instanas_from_search: Annotated[bool, typer.Option("--instanas-from-search/--instanas-from-scratch", help="Fine-tune each InstaNAS snapshot from the search's meta-graph (the authors' script) instead of re-training it from scratch with the recipe (paper).")] = CompareOptions.instanas_from_search,
    instanas_search_lr: Annotated[float, typer.Option("--instanas-search-lr", min=0.0, help="Adam learning rate of --instanas-from-search (cosine annealed, the recipe's epochs).")] = CompareOptions.instanas_search_lr,
    measure: Annotated[int, typer.Option("--measure", min=0, help="Measure each point's N most frequent networks (0: LUT only).")] = CompareOptions.measure,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timing per measured network.")] = CompareOptions.min_run_time,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default <run>/compare).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda, for training and evaluation.")] = CompareOptions.device,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data-loading processes.")] = TrainConfig.workers,
    finetune_epochs: Annotated[int | None, typer.Option("--finetune-epochs", min=1, help="Epochs of re-training (MobileNetV2 widths, one-shot --retrain); default: the run's mobilenetv2 stage's.")] = None,
    finetune_lr: Annotated[float | None, typer.Option("--finetune-lr", help="Adam learning rate of re-training; default: as the run's mobilenetv2 stage.")] = None,
    finetune_batch: Annotated[int | None, typer.Option("--finetune-batch", min=1, help="Batch size of re-training; default: as the run's mobilenetv2 stage.")] = None,
    blockdrop_curriculum_epochs: Annotated[int, typer.Option("--blockdrop-curriculum-epochs", min=1, help="Epochs of BlockDrop's curriculum.")] = BlockDropSettings.curriculum_epochs,
    blockdrop_joint_epochs: Annotated[int, typer.Option("--blockdrop-joint-epochs", min=1, help="Epochs of BlockDrop's joint fine-tuning.")] = BlockDropSettings.joint_epochs,
    blockdrop_lr: Annotated[float, typer.Option("--blockdrop-lr", help="Adam learning rate of the curriculum.")] = BlockDropSettings.lr,
    blockdrop_joint_lr: Annotated[float, typer.Option("--blockdrop-joint-lr", help="Adam learning rate of joint fine-tuning.")] = BlockDropSettings.joint_lr,
    blockdrop_entropy_weight: Annotated[float, typer.Option("--blockdrop-entropy-weight", help="Entropy weight of the curriculum.")] = BlockDropSettings.entropy_weight,
    blockdrop_penalty: Annotated[float, typer.Option("--blockdrop-penalty", help="γ, the reward of a wrong prediction (curriculum).")] = BlockDropSettings.penalty,
    blockdrop_joint_penalty: Annotated[float, typer.Option("--blockdrop-joint-penalty", help="γ in joint fine-tuning.")] = BlockDropSettings.joint_penalty,
    blockdrop_alpha: Annotated[float, typer.Option("--blockdrop-alpha", help="BlockDrop's probability bounding α.")] = BlockDropSettings.alpha,
    blockdrop_batch: Annotated[int, typer.Option("--blockdrop-batch", min=1, help="Batch size of BlockDrop.")] = BlockDropSettings.batch,
    aig_epochs: Annotated[int, typer.Option("--aig-epochs", min=1, help="Epochs of ConvNet-AIG.")] = ConvNetAIGSettings.epochs,
    aig_lr: Annotated[float, typer.Option("--aig-lr", help="SGD learning rate of ConvNet-AIG (step decay at 150/350, 250/350).")] = ConvNetAIGSettings.lr,
    aig_momentum: Annotated[float, typer.Option("--aig-momentum", help="SGD momentum of ConvNet-AIG.")] = ConvNetAIGSettings.momentum,
    aig_weight_decay: Annotated[float, typer.Option("--aig-weight-decay", help="SGD weight decay of ConvNet-AIG.")] = ConvNetAIGSettings.weight_decay,
    aig_target: Annotated[float, typer.Option("--aig-target", min=0.0, max=1.0, help="Target fraction of images each gate runs.")] = ConvNetAIGSettings.target,
    aig_loss_weight: Annotated[float, typer.Option("--aig-loss-weight", help="Weight of the target-rate loss.")] = ConvNetAIGSettings.loss_weight,
    aig_batch: Annotated[int, typer.Option("--aig-batch", min=1, help="Batch size of ConvNet-AIG.")] = ConvNetAIGSettings.batch,
    tensorboard: TensorBoard = CompareOptions.tensorboard,
) -> None:
    """InstaNAS against MobileNetV2 (widths), one-shot, BlockDrop and ConvNet-AIG (and on request ShuffleNet v2 and
    ResNet): table and frontier plot."""
    from instanas.compare import compare as run_compare
    from instanas.compare import comparison_config, markdown_table
    from instanas.training.checkpoints import read_run
    from lut.store import default_store, resolve_table

    values = locals()
    saved = read_run(run)
    if resolution is not None and resolution != saved["resolution"]:
        raise InstaNASError(f"{run}: the run trains at {saved['resolution']} px, not {resolution} px")
    options = CompareOptions(
        methods=tuple(method) if method else DEFAULT_METHODS, widths=parse_widths(widths),
        shufflenet_widths=parse_widths(shufflenet_widths, "--shufflenet-widths"),
        resnet_depths=parse_widths(resnet_depths, "--resnet-depths", int), oneshot_samples=oneshot_samples,
        retrain=retrain, oneshot_retrain_points=oneshot_retrain_points, retrain_snapshots=retrain_snapshots,
        instanas_from_search=instanas_from_search, instanas_search_lr=instanas_search_lr, measure=measure, min_run_time=min_time, device=device, tensorboard=tensorboard,
        blockdrop=_settings(BlockDropSettings, "blockdrop_", values),
        convnet_aig=_settings(ConvNetAIGSettings, "aig_", values))
    recipe = {"finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr, "finetune_batch": finetune_batch}
    config = comparison_config(run, data_dir=data_dir, workers=workers, device=device, recipe=recipe)
    table = resolve_table(saved["resolution"], path=lut, store=default_store(), threads=None, allow_foreign=allow_foreign_lut,
                          merge=saved["cell_merge"], backend=None)
    out = out or run / "compare"
    with interruptible(f"finished epochs and scores are kept in {run}; run the same command to continue"):
        frame = run_compare(run, config, table, options, out)
    typer.echo(markdown_table(frame) + f"\ntable: {out / 'table.md'}, {out / 'table.csv'}; plot: {out / 'frontier.png'}")


def _settings(kind, prefix: str, values: dict):
    """A settings dataclass from the options named ``prefix`` + each of its fields (every field has one: tested)."""
    return kind(**{field.name: values[prefix + field.name] for field in dataclasses.fields(kind)})


@app.command()
def ablation(
    run: Annotated[list[Path], typer.Option("--run", help="A training run folder; repeat. The first is the reference.", file_okay=False)],
    baseline: Annotated[Path, typer.Option("--baseline", help="The MobileNetV2 1.0× checkpoint every run is compared with.", dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder (ablation.md, ablation.csv, search.png).", file_okay=False)],
    lut: Annotated[list[Path] | None, typer.Option("--lut", help="LUT files, one per cell merge the runs use (default: this machine's newest of each).")] = None,
    allow_foreign_lut: AllowForeign = False,
) -> None:
    """Training runs side by side, one setting changed in each: search trajectory and re-trained result."""
    from instanas.ablation import ablation as run_ablation
    from instanas.ablation import markdown
    from instanas.training.checkpoints import read_run
    from lut.store import default_store, load_table, resolve_table

    resolution = read_run(run[0])["resolution"]
    given = {load_table(path).cell_merge: path for path in lut or []}

    def table_for(merge: str):
        return resolve_table(resolution, path=given.get(merge), store=default_store(), threads=None,
                             allow_foreign=allow_foreign_lut, merge=merge, backend=None)

    frame = run_ablation(run, table_for, baseline, out)
    typer.echo(markdown(frame) + f"\ntable: {out / 'ablation.md'}; plot: {out / 'search.png'}")


