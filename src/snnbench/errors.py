"""The project's errors: one base, so the command line prints any of them as one line (what is
wrong and how to fix it) and exits 2; a kind for each cause, so a caller can catch the one it
handles."""


class SnnbenchError(Exception):
    """Something the user can fix; the message says what is wrong and how."""


class ConfigError(SnnbenchError):
    """A bad option or parameter value, or options that do not go together."""


class DataError(SnnbenchError):
    """A dataset, file or referenced model that is missing, corrupt or does not fit."""


class UnsupportedModelError(SnnbenchError):
    """A model (an ONNX graph, a layer, an op) the converter or an engine cannot take."""


class StorageError(SnnbenchError):
    """A tracking or study store that cannot be opened or does not hold what was asked for."""


class ClusterError(SnnbenchError):
    """A compute cluster that cannot be reached or refused the work."""
