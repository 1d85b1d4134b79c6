"""The meta-graph: training-mode routing equals the static child, and unselected modules never run."""

import numpy as np
import pytest
import torch

from instanas.errors import ConfigError
from instanas.metagraph import MetaGraph
from instanas.space import (
    CELL_MERGES,
    MODULE_NAMES,
    full_architecture,
    parse_architecture,
    sample_architectures,
    smallest_architecture,
)


@pytest.fixture(scope="module")
def graph32():
    torch.manual_seed(0)
    graph = MetaGraph(32).eval()
    _randomise_batchnorm(graph)
    return graph


def _randomise_batchnorm(graph):
    """Non-trivial running statistics, so eval-mode equality is not an accident of identity batch-norms."""
    with torch.no_grad():
        for module in graph.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)


def _module_hooks(graph):
    """Record which of the 85 cell modules run."""
    fired = set()
    handles = [
        module.register_forward_hook(lambda *_, key=(c, m): fired.add(key))
        for c, cell in enumerate(graph.cells)
        for m, module in enumerate(cell.options)
    ]
    return fired, handles


@pytest.mark.parametrize("merge", CELL_MERGES)
def test_training_mode_equals_child_on_many_architectures(merge):
    torch.manual_seed(0)
    graph = MetaGraph(32, merge=merge).eval()
    _randomise_batchnorm(graph)
    archs = sample_architectures(24, keep=np.linspace(0.05, 0.9, 24), seed=3)
    x = torch.randn(len(archs), 3, 32, 32)
    with torch.no_grad():
        batched = graph(x, torch.from_numpy(archs))
        for i, arch in enumerate(archs):
            alone = graph.child(arch)(x[i : i + 1])
            torch.testing.assert_close(batched[i : i + 1], alone, rtol=1e-4, atol=1e-5)
    assert batched.shape == (24, 10)


def _activation_rms(graph, modules_per_cell: int) -> float:
    """RMS of the activations after the deepest cell of the 64-channel stage (cell 9), batch statistics."""
    arch = np.zeros((17, 5), dtype=bool)
    arch[:, :modules_per_cell] = True
    child = graph.child(arch).train()
    with torch.no_grad():
        x = child.stem(torch.randn(16, 3, 32, 32))
        for cell in child.cells[:10]:
            x = cell(x)
    return float(x.pow(2).mean().sqrt())


def test_mean_cells_keep_one_scale_where_summing_cells_compound():
    torch.manual_seed(0)
    summed, averaged = MetaGraph(32, merge="sum"), MetaGraph(32, merge="mean")
    assert _activation_rms(summed, 5) > 20 * _activation_rms(summed, 1), "k modules with identities: about k·x per cell"
    ratio = _activation_rms(averaged, 5) / _activation_rms(averaged, 1)
    assert 0.2 < ratio < 2, f"the mean keeps the scale whatever k is (ratio {ratio:.2f})"


def test_unknown_cell_merge_is_refused():
    with pytest.raises(ConfigError, match="cell merge 'max'"):
        MetaGraph(32, merge="max")


@pytest.mark.parametrize("resolution, classes", [(64, 200), (224, 1000)])
def test_equivalence_and_shapes_at_larger_resolutions(resolution, classes):
    torch.manual_seed(1)
    graph = MetaGraph(resolution).eval()
    archs = sample_architectures(2, keep=[0.2, 0.5], seed=resolution)
    x = torch.randn(2, 3, resolution, resolution)
    final_maps = []
    graph.head.register_forward_hook(lambda module, inputs, output: final_maps.append(inputs[0].shape[-1]))
    with torch.no_grad():
        batched = graph(x, torch.from_numpy(archs))
        for i, arch in enumerate(archs):
            torch.testing.assert_close(batched[i : i + 1], graph.child(arch)(x[i : i + 1]), rtol=1e-4, atol=1e-5)
    assert batched.shape == (2, classes)
    assert set(final_maps) == {graph.space.final_hw}


def test_child_runs_only_selected_modules(graph32):
    fired, handles = _module_hooks(graph32)
    try:
        for arch in [smallest_architecture(), *sample_architectures(5, keep=0.3, seed=11)]:
            fired.clear()
            with torch.no_grad():
                graph32.child(arch)(torch.randn(1, 3, 32, 32))
            assert fired == {tuple(index) for index in np.argwhere(arch)}
    finally:
        for handle in handles:
            handle.remove()


def test_child_holds_only_selected_modules_and_shares_weights(graph32):
    arch = smallest_architecture()
    child = graph32.child(arch)
    assert len(child.cells) == 7  # the 10 empty optional cells are not in the network at all
    assert sum(len(cell.selected) for cell in child.cells) == 7
    assert child.cells[0].selected[0] is graph32.cells[0].options[MODULE_NAMES.index("basic")]
    assert child.stem is graph32.stem and child.head is graph32.head


def test_training_mode_skips_modules_nobody_in_the_batch_selects(graph32):
    archs = sample_architectures(4, keep=0.25, seed=5)
    fired, handles = _module_hooks(graph32)
    try:
        with torch.no_grad():
            graph32(torch.randn(4, 3, 32, 32), torch.from_numpy(archs))
    finally:
        for handle in handles:
            handle.remove()
    assert fired == {tuple(index) for index in np.argwhere(archs.any(axis=0))}


def test_training_mode_applies_the_default_module_to_empty_required_cells(graph32):
    nothing = torch.zeros(2, 17, 5, dtype=torch.bool)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(graph32(x, nothing), graph32.child(smallest_architecture())(x))


def test_gradients_reach_only_selected_modules():
    torch.manual_seed(2)
    graph = MetaGraph(32).train()
    archs = sample_architectures(3, keep=0.3, seed=9)
    loss = graph(torch.randn(3, 3, 32, 32), torch.from_numpy(archs)).logsumexp(1).sum()
    loss.backward()
    used = archs.any(axis=0)
    for c, cell in enumerate(graph.cells):
        for m, module in enumerate(cell.options):
            has_grad = any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
            assert has_grad == used[c, m], (c, m)


def test_full_selection_is_the_default_and_equals_full_child(graph32):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(graph32(x), graph32.child(full_architecture())(x), rtol=1e-4, atol=1e-5)


def test_child_of_invalid_architecture_is_refused(graph32):
    arch = full_architecture()
    arch[6] = False
    with pytest.raises(ValueError, match="cell 6"):
        graph32.child(arch)


def test_child_string_form(graph32):
    text = "-".join(["10000"] * 17)
    child = graph32.child(parse_architecture(text))
    assert len(child.cells) == 17


def test_channels_last_training_keeps_its_layout_and_computes_the_same():
    """A channels-last batch stays channels-last through every cell (rows gathered and scattered back), and the
    training-mode outputs and gradients equal the contiguous path's on the same weights and selections (in float64:
    in float32 an untrained meta-graph's batch norms over one image's 2×2 maps turn summation order into gradients
    4 % apart)."""
    torch.manual_seed(4)
    graphs = {layout: MetaGraph(32).train().double() for layout in (torch.contiguous_format, torch.channels_last)}
    graphs[torch.channels_last].load_state_dict(graphs[torch.contiguous_format].state_dict())
    graphs[torch.channels_last].to(memory_format=torch.channels_last)
    images = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    selection = torch.from_numpy(sample_architectures(6, keep=np.linspace(0.1, 0.9, 6), seed=5))
    layouts, outputs, grads = [], {}, {}
    graph = graphs[torch.channels_last]
    hooks = [cell.register_forward_hook(lambda _, __, out: layouts.append(
        out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous())) for cell in graph.cells[:-4]]
    for layout, network in graphs.items():
        logits = network(images.contiguous(memory_format=layout), selection)
        logits.logsumexp(1).sum().backward()
        outputs[layout] = logits
        grads[layout] = torch.cat([p.grad.flatten() for p in network.parameters() if p.grad is not None])
    for hook in hooks:
        hook.remove()
    assert layouts and all(layouts), "every cell's output is channels-last (the last cells are 4×4 or smaller)"
    torch.testing.assert_close(outputs[torch.channels_last], outputs[torch.contiguous_format])
    torch.testing.assert_close(grads[torch.channels_last], grads[torch.contiguous_format])
