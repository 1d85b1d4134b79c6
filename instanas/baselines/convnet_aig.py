"""ConvNet-AIG (Veit & Belongie, ECCV 2018) on the trained MobileNetV2 of the space.

Before every residual cell a small gate (global pooling → FC → BN → ReLU → FC to two logits) decides per image
whether the cell runs. Training samples the decision with a hard Gumbel-softmax and passes gradients straight
through, which needs the cell's output for every image (``x + g·(cell(x) − x)``); the loss adds the target-rate term
λ·mean over gates of (t − the gate's open fraction in the batch)². At inference the gate's larger logit decides and
a closed cell does not run for that image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instanas.baselines.backbone import BACKBONE_MODULE, DROPPABLE_CELLS, backbone_selection
from instanas.baselines.blockdrop import load_backbone
from instanas.baselines.settings import ConvNetAIGSettings
from instanas.metagraph import MetaGraph
from instanas.space import NUM_MODULES
from instanas.training.loop import Stage, Trainer

GATE_HIDDEN = 16


class Gate(nn.Module):
    """Two logits per image, (skip, run); starts open, as the authors initialise it."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, GATE_HIDDEN), nn.BatchNorm1d(GATE_HIDDEN),
            nn.ReLU(inplace=True), nn.Linear(GATE_HIDDEN, 2),
        )
        with torch.no_grad():
            self.body[-1].bias.copy_(torch.tensor([0.1, 2.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class GatedMobileNetV2(nn.Module):
    def __init__(self, backbone: MetaGraph):
        super().__init__()
        self.backbone = backbone
        self.gates = nn.ModuleDict(
            {str(cell): Gate(backbone.space.cells[cell].in_channels) for cell in DROPPABLE_CELLS})

    def forward(self, images: Tensor, with_gates: bool = False):
        """Logits, and with ``with_gates`` the ``(B, droppable cells)`` gate decisions (differentiable in training)."""
        runs = torch.zeros(len(images), NUM_MODULES, dtype=torch.bool, device=images.device)
        runs[:, BACKBONE_MODULE] = True
        x = self.backbone.stem(images)
        decisions = []
        for index, cell in enumerate(self.backbone.cells):
            if str(index) not in self.gates:  # a cell that changes shape always runs
                x = cell(x, runs)
                continue
            gate = self.gates[str(index)]
            if self.training:
                opened = F.gumbel_softmax(gate(x), tau=1.0, hard=True)[:, 1]
                x = x + opened.view(-1, 1, 1, 1) * (cell(x, runs) - x)
                decisions.append(opened)
            else:
                logits = gate(x)
                opened = logits[:, 1] > logits[:, 0]
                x = cell(x, runs & opened[:, None])
                decisions.append(opened.float())
        logits = self.backbone.head(x)
        return (logits, torch.stack(decisions, 1)) if with_gates else logits

    def decide(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Inference: logits and each image's architecture in the space (closed cells empty)."""
        logits, opened = self(images, with_gates=True)
        return logits, backbone_selection(opened > 0.5)


class ConvNetAIGStage(Stage):
    name = "convnet-aig"

    def __init__(self, trainer: Trainer, resume: bool, settings: ConvNetAIGSettings):
        self.own = own = settings
        super().__init__(trainer, resume)
        backbone = trainer.new_metagraph() if self.resumed else load_backbone(trainer)
        self.network = trainer.place(GatedMobileNetV2(backbone))
        self.model = self.workers.wrap(self.network)
        self.optimizer = trainer.optimizer("sgd", self.network.parameters(), own.lr, momentum=own.momentum,
                                           weight_decay=own.weight_decay)
        # the authors' steps at 150 and 250 of 350 epochs
        milestones = [int(own.epochs * 150 / 350), int(own.epochs * 250 / 350)]
        self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, 0.1)
        self._restore(network=self.network, optimizer=self.optimizer, schedule=self.schedule)

    @property
    def epochs(self) -> int:
        return self.own.epochs

    def stage_settings(self) -> dict:
        return self.config.shared_settings() | self.own.checkpoint_settings()

    def state(self) -> dict:
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict()}

    def train_epoch(self, epoch: int) -> dict:
        own = self.own
        open_rates: list[Tensor] = []

        def step(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
            self.model.train()
            logits, opened = self.model(images, with_gates=True)
            rates = opened.mean(0)
            loss = F.cross_entropy(logits, labels) + own.loss_weight * ((own.target - rates) ** 2).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            open_rates.append(rates.detach().mean())
            return loss.detach(), logits.argmax(1) == labels

        loader = self.trainer.loader(self.trainer.train_set, own.batch, train=True)
        row = self.trainer.epoch(loader, epoch, "convnet-aig", step, "train")
        self.schedule.step()
        row["train_open_rate"] = float(torch.stack(open_rates).mean()) if open_rates else 0.0
        return row | self.trainer.evaluate(self.network)
