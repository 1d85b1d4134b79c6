"""Batch-norm statistics for the architectures being evaluated, not for the mix a meta-graph was trained on.

A weight-sharing meta-graph keeps one running mean and variance per batch-norm layer, accumulated over every child it
was trained on. A particular policy's children (a sparse greedy policy, one fixed architecture) can see other
statistics. Recalibrating re-estimates them on training images run through exactly those children, the standard
practice of one-shot NAS (Bender et al. 2018; Guo et al. 2019): reset, then a cumulative average over a few batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def _batch_norms(network: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [module for module in network.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batch_norm(network: nn.Module, batches: Iterable[Tensor],
                           choose: Callable[[Tensor], Tensor] | None = None) -> int:
    """Re-estimate every batch-norm layer's running statistics on ``batches`` of images, each image run through the
    architecture ``choose(images)`` gives it (a meta-graph), or through ``network`` itself (a static network, e.g. a
    child); returns the number of images used. Weights are not touched."""
    layers = _batch_norms(network)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches, not an exponential one
    was_training = network.training
    network.train()
    images_seen = 0
    try:
        with torch.no_grad():
            for images in batches:
                network(images) if choose is None else network(images, choose(images))
                images_seen += len(images)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        network.train(was_training)
    return images_seen


@contextmanager
def recalibrated(network: nn.Module, batches: Iterable[Tensor],
                 choose: Callable[[Tensor], Tensor] | None = None) -> Iterator[None]:
    """Inside the block ``network`` has statistics recalibrated for ``choose``; afterwards its own are back."""
    saved = [(layer, layer.running_mean.clone(), layer.running_var.clone(), layer.num_batches_tracked.clone())
             for layer in _batch_norms(network)]
    recalibrate_batch_norm(network, batches, choose)
    try:
        yield
    finally:
        for layer, mean, var, tracked in saved:
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
            layer.num_batches_tracked.copy_(tracked)
