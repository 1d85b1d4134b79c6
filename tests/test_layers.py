"""The packages are layered and every import points down: the search space and its networks at the bottom, the
profiler (how to time things) on them, the LUT (table, store, estimation, calibration, validation) on that, and
training, baselines, comparison and the CLI on top. Function-level imports count as much as module-level ones."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("instanas", "profiler", "lut")
# bottom to top; a module belongs to the first layer with a prefix of its name
LAYERS = (
    ("space and networks", ("instanas.errors", "instanas.atomic", "instanas.lock", "instanas.journal",
                            "instanas.progress", "instanas.plots", "instanas.space", "instanas.modules",
                            "instanas.metagraph", "instanas.controller", "instanas.batchnorm", "instanas.cluttered",
                            "instanas.data")),
    ("profiler", ("profiler",)),
    ("lut", ("lut",)),
    ("training, baselines, comparison, CLI", ("instanas",)),
)


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer")


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path, root: Path) -> set[str]:
    """The project modules ``path`` imports, wherever in the file (absolute, and relative resolved)."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            for alias in node.names:  # ``from instanas import errors`` imports the module instanas.errors
                submodule = f"{module}.{alias.name}"
                is_module = any((root / submodule.replace(".", "/")).with_suffix(suffix).exists()
                                for suffix in (".py", ""))
                found.add(submodule if is_module else module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def upward_imports(root: Path) -> list[str]:
    edges = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = module_name(path, root)
            for target in sorted(imports(path, root)):
                if layer_of(target) > layer_of(source):
                    edges.append(f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} "
                                 f"({LAYERS[layer_of(target)][0]})")
    return edges


def test_every_import_points_down():
    assert upward_imports(ROOT) == []


def test_an_upward_import_is_caught(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "instanas" / "space.py").write_text("def f():\n    from lut.table import LatencyTable\n")
    (tmp_path / "lut" / "table.py").write_text("from instanas.space import f\nfrom .store import g\n")
    (tmp_path / "lut" / "store.py").write_text("from instanas import compare, errors\n")
    (tmp_path / "instanas" / "compare.py").write_text("")
    (tmp_path / "instanas" / "errors.py").write_text("")
    assert upward_imports(tmp_path) == [
        "instanas.space (space and networks) imports lut.table (lut)",
        "lut.store (lut) imports instanas.compare (training, baselines, comparison, CLI)",
    ]


@pytest.mark.parametrize("module, layer", [("instanas.metagraph", 0), ("profiler.timing", 1), ("lut.validation", 2),
                                           ("instanas.train", 3), ("instanas.baselines.oneshot", 3)])
def test_modules_fall_in_their_layers(module, layer):
    assert layer_of(module) == layer


def test_modules_stay_small_enough_to_read():
    """No module over 460 lines; the CLI's command modules at most 350 (issue 35)."""
    too_long = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            limit = 350 if path.parent.name == "cli" else 460
            lines = len(path.read_text().splitlines())
            if lines > limit:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines > {limit}")
    assert not too_long, too_long
