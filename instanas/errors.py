"""User-facing error types: the CLI prints these as one line with exit code 2.

Programming errors are not wrapped, so they keep their traceback.
"""


class InstaNASError(Exception):
    """Base class of every error caused by what the user gave us (a value, a file, a folder)."""


class ArchitectureError(InstaNASError, ValueError):
    """An architecture string or selection array that is malformed or violates the search space."""


class ResolutionError(InstaNASError, ValueError):
    """A resolution the search space is not defined for."""


class LUTError(InstaNASError):
    """A lookup-table file that is missing, truncated, corrupt, of another schema, or of the wrong resolution."""


class ForeignLUTError(LUTError):
    """A lookup table profiled on another machine (fingerprint), used to estimate latency here."""


class ConfigError(InstaNASError, ValueError):
    """An option whose value is unknown or out of range (a reward, a cell merge, a schedule)."""


class DatasetError(InstaNASError):
    """A dataset name that is unknown, or a dataset folder that is missing or not in the expected layout."""


class CheckpointError(InstaNASError):
    """A training checkpoint or run folder that is missing, unreadable, or from other settings."""


class BackendError(InstaNASError):
    """A timing backend whose runtime package is not installed."""
