"""The ``instanas`` application and its entry point: user errors (bad values, files, folders) end as one line on stderr
with exit code 2; see :func:`main`."""

from __future__ import annotations

import sys
import warnings
from typing import Annotated

import typer

from instanas.errors import InstaNASError

app = typer.Typer(
    help="InstaNAS latency profiling and benchmarking: search space, lookup tables, correlation, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def configure(
    malloc: Annotated[
        str,
        typer.Option(
            "--malloc",
            envvar="INSTANAS_MALLOC",
            help="pinned (default): glibc's mmap and trim thresholds fixed, so timings do not depend on what ran "
            "before; system: glibc's moving thresholds. Recorded in the machine fingerprint.",
        ),
    ] = "pinned",
) -> None:
    """Settings of the process that every command's timings depend on."""
    from profiler.allocator import ALLOCATOR_MODES, set_allocator

    if malloc not in ALLOCATOR_MODES:
        raise InstaNASError(f"--malloc {malloc!r}: use one of {', '.join(ALLOCATOR_MODES)}")
    set_allocator(malloc)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
    try:
        result = app(args=argv, standalone_mode=False)
    except InstaNASError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except OSError as error:  # a file or folder that cannot be made, read or written: --out on a read-only disk, …
        where = f"{error.filename}: " if error.filename else ""
        typer.echo(f"error: {where}{error.strerror or error}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except Exception as error:
        # Usage errors (unknown option, bad type, missing value) are click exceptions, which typer now vendors
        # privately: recognise them by their public interface instead of importing a private module.
        if not callable(getattr(error, "format_message", None)):
            raise
        typer.echo(f"error: {error.format_message()}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

