"""The search space: cell tables, the architecture value and its text form, sampling."""

import itertools

import numpy as np
import pytest
import torch

from instanas.errors import ArchitectureError, ResolutionError
from instanas.space import (
    ARCH_SHAPE,
    DEFAULT_MODULE,
    MODULE_NAMES,
    NUM_CELLS,
    NUM_MODULES,
    REQUIRED_CELLS,
    correlation_sample,
    edge_architectures,
    few_kind_sample,
    format_architecture,
    full_architecture,
    kind_repeats,
    mobilenetv2_architecture,
    parse_architecture,
    sample_architectures,
    search_space,
    smallest_architecture,
    validate_architecture,
    with_default_modules,
)

WIDTHS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
STAGE_STARTS = [0, 1, 3, 6, 10, 13, 16]


@pytest.mark.parametrize(
    "resolution, stem_stride, stage_strides, input_sizes, final_hw",
    [
        (32, 1, (1, 1, 2, 2, 1, 2, 1), [32, 32, 32, 32, 16, 16, 16, 8, 8, 8, 8, 8, 8, 8, 4, 4, 4], 4),
        (64, 1, (1, 2, 2, 2, 1, 2, 1), [64, 64, 32, 32, 16, 16, 16, 8, 8, 8, 8, 8, 8, 8, 4, 4, 4], 4),
        (224, 2, (1, 2, 2, 2, 1, 2, 1), [112, 112, 56, 56, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14, 7, 7, 7], 7),
    ],
)
def test_cell_table(resolution, stem_stride, stage_strides, input_sizes, final_hw):
    space = search_space(resolution)
    assert space.stem_stride == stem_stride
    assert len(space.cells) == NUM_CELLS
    assert [cell.out_channels for cell in space.cells] == WIDTHS
    assert [cell.in_channels for cell in space.cells] == [32] + WIDTHS[:-1]
    strides = [cell.stride for cell in space.cells]
    assert [strides[i] for i in STAGE_STARTS] == list(stage_strides)
    assert sum(strides) == NUM_CELLS + sum(s == 2 for s in stage_strides)  # every other cell has stride 1
    assert [cell.input_hw for cell in space.cells] == input_sizes
    assert space.final_hw == final_hw
    assert np.flatnonzero(space.required_cells).tolist() == STAGE_STARTS


def test_architecture_count_matches_per_cell_enumeration():
    """Count the valid subsets of each cell by asking the validator, independently of the closed form."""
    space = search_space(32)
    per_cell = []
    for cell in range(NUM_CELLS):
        valid = 0
        for bits in itertools.product([False, True], repeat=5):
            arch = full_architecture()
            arch[cell] = bits
            try:
                validate_architecture(arch)
                valid += 1
            except ArchitectureError:
                pass
        per_cell.append(valid)
    assert int(np.prod(per_cell, dtype=object)) == space.num_architectures == 31**7 * 32**10
    assert 1e25 < space.num_architectures < 1e26


def test_unsupported_resolution_is_rejected():
    with pytest.raises(ResolutionError, match="resolution 48"):
        search_space(48)


def test_module_order_is_the_released_models():
    assert MODULE_NAMES == ("mb3e6", "mb3e3", "mb5e6", "mb5e3", "basic")
    assert MODULE_NAMES[DEFAULT_MODULE] == "basic"


def test_string_round_trip():
    archs = sample_architectures(200, keep=np.linspace(0.05, 1.0, 200), seed=0)
    for arch in archs:
        text = format_architecture(arch)
        assert len(text.split("-")) == NUM_CELLS
        np.testing.assert_array_equal(parse_architecture(text), arch)
        assert format_architecture(parse_architecture(text)) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("11111", "has 1 cell tokens"),
        ("-".join(["11111"] * 16), "has 16 cell tokens"),
        ("-".join(["11111"] * 16 + ["1111"]), "cell 16 token '1111'"),
        ("-".join(["11111"] * 5 + ["11a11"] + ["11111"] * 11), "cell 5 token '11a11'"),
        ("-".join(["11111"] * 3 + ["00000"] + ["11111"] * 13), "cell 3 needs at least one module"),
    ],
)
def test_malformed_or_invalid_strings_name_the_problem(text, message):
    with pytest.raises(ArchitectureError, match=message):
        parse_architecture(text)


def test_empty_optional_cell_is_valid():
    arch = full_architecture()
    arch[2] = False
    assert format_architecture(arch).split("-")[2] == "00000"


def test_validate_rejects_wrong_shape_and_values():
    with pytest.raises(ArchitectureError, match="shape"):
        validate_architecture(np.ones((17, 4), dtype=bool))
    with pytest.raises(ArchitectureError, match="0/1"):
        validate_architecture(np.full((17, 5), 2))
    assert validate_architecture(np.ones((17, 5), dtype=int)).dtype == bool


def test_architecture_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_architecture("nonsense")


def test_default_modules_fill_only_empty_required_cells():
    empty = np.zeros((3, 17, 5), dtype=bool)
    empty[1, 3, 0] = True  # cell 3 of the second sample already has a module
    repaired = with_default_modules(empty)
    assert not empty.any(axis=(0, 2))[[0, 1, 2]].any()  # the input is not modified
    for sample in range(3):
        validate_architecture(repaired[sample])
    assert repaired[:, :, DEFAULT_MODULE].sum(axis=1).tolist() == [7, 6, 7]
    assert not repaired[:, ~REQUIRED_CELLS].any()

    as_tensor = with_default_modules(torch.from_numpy(empty))
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), repaired)


def test_named_architectures():
    assert smallest_architecture().sum() == 7
    assert smallest_architecture()[:, DEFAULT_MODULE].sum() == 7
    assert full_architecture().sum() == 85
    assert mobilenetv2_architecture()[:, 0].all() and mobilenetv2_architecture().sum() == 17


def test_sampling_is_valid_seeded_and_follows_keep():
    archs = sample_architectures(500, keep=0.3, seed=7)
    assert archs.shape == (500, 17, 5) and archs.dtype == bool
    for arch in archs:
        validate_architecture(arch)
    np.testing.assert_array_equal(archs, sample_architectures(500, keep=0.3, seed=7))
    assert not np.array_equal(archs, sample_architectures(500, keep=0.3, seed=8))
    optional_density = archs[:, ~REQUIRED_CELLS].mean()
    assert 0.27 < optional_density < 0.33
    assert sample_architectures(3, keep=1.0, seed=0).all()


def test_per_sample_keep_spans_cheap_to_rich():
    keep = np.linspace(0.05, 0.95, 1000)
    sizes = sample_architectures(1000, keep=keep, seed=1).sum(axis=(1, 2))
    assert sizes[:100].mean() < 15 < 70 < sizes[-100:].mean()


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5])
def test_sampling_rejects_bad_keep(keep):
    with pytest.raises(ArchitectureError, match="keep"):
        sample_architectures(2, keep=keep)


def test_per_kind_keep_never_draws_a_kind_kept_with_zero():
    keep = np.zeros((200, NUM_MODULES))
    keep[:, 1] = 0.5
    keep[:100, 4] = 0.9
    archs = sample_architectures(200, keep=keep, seed=0)
    assert not archs[:, :, [0, 2, 3]].any() and not archs[100:, :, 4].any() and archs[:100, :, 4].any()
    assert archs[:, REQUIRED_CELLS].any(axis=2).all(), "required cells drawn again among the kept kinds"
    with pytest.raises(ArchitectureError, match="keep"):
        sample_architectures(2, keep=np.zeros((2, NUM_MODULES)))


def test_few_kind_children_use_one_or_two_kinds_and_repeat_them():
    archs, keep, kinds = few_kind_sample(300, seed=1)
    for used, chosen in zip(archs.any(axis=1), kinds):
        assert set(np.array(MODULE_NAMES)[used]) <= set(chosen)
    assert {len(chosen) for chosen in kinds} == {1, 2} and ((keep >= 0.05) & (keep <= 0.95)).all()
    assert archs[:, REQUIRED_CELLS].any(axis=2).all()
    random_archs, _ = correlation_sample(300, seed=1)
    assert kind_repeats(archs).sum(axis=1).mean() > 3 * kind_repeats(random_archs).sum(axis=1).mean()
    np.testing.assert_array_equal(archs, few_kind_sample(300, seed=1)[0])


def test_kind_repeats_count_a_kind_run_right_after_itself():
    mb3e3, basic = MODULE_NAMES.index("mb3e3"), MODULE_NAMES.index("basic")
    arch = np.zeros((1, *ARCH_SHAPE), dtype=bool)
    arch[0, 0, mb3e3] = arch[0, 1, [mb3e3, basic]] = arch[0, 3, basic] = True  # mb3e3 mb3e3 basic | basic
    assert kind_repeats(arch).tolist() == [[0, 1, 0, 0, 1]]
    one_kind = np.zeros((1, *ARCH_SHAPE), dtype=bool)
    one_kind[0, :, basic] = True
    assert kind_repeats(one_kind)[0, basic] == NUM_CELLS - 1
    assert not kind_repeats(full_architecture()[None]).any(), "the full network never runs a kind twice in a row"


def test_edge_architectures_span_the_space():
    edges = dict(edge_architectures())
    assert edges["smallest"].sum() == smallest_architecture().sum() and edges["full"].all()
    singles = [arch for label, arch in edges.items() if label.endswith("in every cell")]
    assert len(singles) == NUM_MODULES and all((arch.sum(axis=1) == 1).all() for arch in singles)
    sparse = [arch.sum() for label, arch in edges.items() if label.startswith("sparse")]
    dense = [arch.sum() for label, arch in edges.items() if label.startswith("dense")]
    assert len(sparse) == len(dense) == 3 and max(sparse) < 20 and min(dense) > 75
    for arch in edges.values():
        validate_architecture(arch)
    assert len({arch.tobytes() for arch in edges.values()}) == len(edges), "no edge twice"
