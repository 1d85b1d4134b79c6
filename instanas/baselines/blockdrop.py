"""BlockDrop (Wu et al., CVPR 2018) on the trained MobileNetV2 of the space.

A policy network (InstaNAS's controller body with one output per droppable cell) looks at the image and keeps or
drops each residual cell. Reward: 1 − (kept fraction)² when the prediction is right, γ otherwise; REINFORCE with
the self-critical baseline. First a curriculum with the backbone fixed (epoch e lets the policy decide the last
e + 1 droppable cells, earlier ones always run; policy loss and entropy bonus averaged over the batch), then joint
fine-tuning of policy and backbone (the policy loss summed over the batch plus the backbone's mean cross-entropy on
the sampled policy), each weighted as the authors' ``cl_training.py`` and ``finetune.py`` weigh them. Epochs are
fewer than theirs (``--blockdrop-*-epochs``; the README's Departures).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from instanas.baselines.backbone import DROPPABLE_CELLS, backbone_selection
from instanas.baselines.settings import BlockDropSettings
from instanas.controller import PolicyNetwork
from instanas.training.checkpoints import load_checkpoint
from instanas.training.loop import Stage, Trainer, self_critical_loss

BACKBONE_STAGE = "mobilenetv2"


def load_backbone(trainer: Trainer):
    """The run's trained MobileNetV2 1.0× (a meta-graph trained on ``mb3e6`` in every cell)."""
    backbone = trainer.new_metagraph()
    backbone.load_state_dict(load_checkpoint(trainer.out / f"{BACKBONE_STAGE}.pt")["metagraph"])
    return backbone


class BlockDropStage(Stage):
    name = "blockdrop"

    def __init__(self, trainer: Trainer, resume: bool, table, settings: BlockDropSettings):
        self.own = settings
        super().__init__(trainer, resume)
        self.table = table
        self.backbone = trainer.new_metagraph() if self.resumed else load_backbone(trainer)
        self.policy = trainer.place(PolicyNetwork(trainer.resolution, len(DROPPABLE_CELLS)))
        self.backbone_model, self.policy_model = self.workers.wrap(self.backbone), self.workers.wrap(self.policy)
        self.curriculum_optimizer = trainer.optimizer("adam", self.policy.parameters(), settings.lr)
        self.joint_optimizer = trainer.optimizer("adam", [*self.policy.parameters(), *self.backbone.parameters()],
                                                 settings.joint_lr)
        self._restore(metagraph=self.backbone, policy=self.policy, curriculum_optimizer=self.curriculum_optimizer,
                      joint_optimizer=self.joint_optimizer)
        self.decided = torch.ones(len(DROPPABLE_CELLS), dtype=torch.bool, device=self.workers.device)

    @property
    def epochs(self) -> int:
        return self.own.curriculum_epochs + self.own.joint_epochs

    def stage_settings(self) -> dict:
        return self.config.shared_settings() | self.own.checkpoint_settings()

    def state(self) -> dict:
        return {"metagraph": self.backbone.state_dict(), "policy": self.policy.state_dict(),
                "curriculum_optimizer": self.curriculum_optimizer.state_dict(),
                "joint_optimizer": self.joint_optimizer.state_dict()}

    def choose(self, images: Tensor) -> Tensor:
        """The inference policy: the cells with p > 0.5, and (during the curriculum) every cell not yet decided."""
        return backbone_selection((self.policy(images) > 0.5) | ~self.decided)

    def _reward(self, images: Tensor, labels: Tensor, keep: Tensor, penalty: float) -> tuple[Tensor, Tensor, Tensor]:
        """1 − (kept fraction)² per right prediction, ``penalty`` per wrong one; which were right; the logits."""
        logits = self.backbone_model(images, backbone_selection(keep))
        correct = logits.argmax(1) == labels
        kept = keep.float().mean(1)
        return torch.where(correct, 1 - kept**2, torch.full_like(kept, penalty)), correct, logits

    def train_epoch(self, epoch: int) -> dict:
        own = self.own
        joint = epoch >= own.curriculum_epochs
        decided = self.decided = torch.ones_like(self.decided)
        if not joint:  # the curriculum: only the last epoch + 1 cells are the policy's
            decided[: -min(epoch + 1, len(DROPPABLE_CELLS))] = False
        optimizer = self.joint_optimizer if joint else self.curriculum_optimizer
        penalty = own.joint_penalty if joint else own.penalty
        entropy_weight = 0.0 if joint else own.entropy_weight

        def step(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
            self.policy_model.train()
            self.backbone_model.train(joint)
            priced: list[tuple] = []

            def reward(keep: Tensor, drawn: bool) -> tuple:
                # the sample is priced first: in joint training its forward keeps a graph for the cross-entropy
                with torch.set_grad_enabled(joint and not priced):
                    priced.append(self._reward(images, labels, keep, penalty))
                return priced[-1]

            loss, (_, correct, logits) = self_critical_loss(
                self.policy_model(images), reward, own.alpha, entropy_weight, decided.expand(len(images), -1),
                summed=joint,
            )
            if joint:
                loss = loss + F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach(), correct

        loader = self.trainer.loader(self.trainer.train_set, own.batch, train=True)
        label = "blockdrop: joint" if joint else f"blockdrop: last {int(decided.sum())} cells"
        row = {"phase": "joint" if joint else "curriculum"} | self.trainer.epoch(loader, epoch, label, step, "train")
        self.policy.eval()
        return row | self.trainer.evaluate(self.backbone, self.choose, self.table, self.table.default_mode)
