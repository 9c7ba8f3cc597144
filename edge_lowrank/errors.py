"""Project exceptions. The CLI turns any `EdgeLowrankError` into one line on stderr and exit code 1."""


class EdgeLowrankError(Exception):
    """Base class of every error the project raises on purpose (bad input, missing data, ...)."""


class DataError(EdgeLowrankError, ValueError):
    """A data set is missing, malformed or does not fit the model."""


class ModelError(EdgeLowrankError, ValueError):
    """A model file cannot be read, or the model cannot be handled."""


class GateError(EdgeLowrankError):
    """A pipeline gate (accuracy drop, speedup, size, arena) was not met. Exit code 3."""

    exit_code = 3


class EdgeLowrankWarning(UserWarning):
    """A note the project itself emits; the CLI shows each as one line (`edge-lowrank CMD: message`)."""


class RepairWarning(EdgeLowrankWarning):
    """A model file was loaded after a known config repair (`edge_lowrank.legacy`); one line per repair."""
