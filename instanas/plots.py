"""One way to draw a figure: matplotlib without a display, written atomically as a PNG."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from instanas.atomic import atomic_write


@contextmanager
def png_figure(path: Path, size: tuple[float, float], ncols: int = 1, nrows: int = 1) -> Iterator:
    """Yield the axes of a new figure (``nrows`` × ``ncols`` of them); when the block ends, save it to ``path``
    (temp file + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(nrows, ncols, figsize=size, dpi=120)
    try:
        yield axes
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        atomic_write(path, buffer.getvalue())
    finally:
        plt.close(figure)
