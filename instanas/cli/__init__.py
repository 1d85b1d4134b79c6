"""The ``instanas`` command: parse, call the library, print. No logic of its own.

One module per command group, each registering its commands on :data:`app` when imported, in the order ``--help``
lists them: ``tables`` (space, sample, export, profile, estimate), ``validation`` (measure, correlate, calibrate),
``training`` (train, evaluate, compare, ablation) and ``lut_commands`` (lut list/show/diff); ``options`` holds the
option types they share, ``agreement`` the printed validation summary, ``app`` the application and its entry point :func:`main`.
"""

# isort: off
from instanas.cli import tables, validation, training, lut_commands  # noqa: F401  (they register their commands)
from instanas.cli.app import app, main
# isort: on

__all__ = ["app", "main"]
