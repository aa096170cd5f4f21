"""Every exception fgad raises on purpose, one class per kind of failure.

Every error a user can cause derives from :class:`FgadError`; the command line turns it into one
line on stderr and a non-zero exit status instead of a traceback. Each class also derives from
the built-in exception a caller would expect (``ValueError`` for bad values, ``OSError`` for
files and downloads...), so ``except ValueError`` keeps working.
"""


class FgadError(Exception):
    """Base class of every error caused by input, configuration or files given by the user."""


class UsageError(FgadError, ValueError):
    """A command line that cannot be parsed: an unknown option, a missing or malformed argument."""


class InputError(FgadError, ValueError):
    """Images, arrays or labels that cannot be used (wrong dtype, rank, size, empty, NaN...)."""


class ImageReadError(InputError):
    """An image file that cannot be read or decoded."""


class UnsafeArchiveError(InputError):
    """An archive with a member that would land outside the target folder, or too big to extract."""


class ConfigError(FgadError, ValueError):
    """Unknown configuration keys, wrong types, unknown preset, task, method or dataset names."""


class ModelFileError(FgadError):
    """A saved model that is missing, incomplete, or whose tensors do not match its config."""


class DatasetNotFoundError(FgadError, FileNotFoundError):
    """A dataset whose files are not where the adapter looks; the message says which to put where."""


class DownloadError(FgadError, OSError):
    """A download that failed, was larger than expected, or whose checksum does not match."""


class OutputError(FgadError, OSError):
    """An output location that cannot be written (not writable, disk full...)."""


class MissingDependencyError(FgadError, ImportError):
    """An optional package (Ray, onnx, onnxruntime) that the requested feature needs is not installed."""


class DistributedError(FgadError, RuntimeError):
    """Distributed training asked for where it cannot run (no initialised process group)."""
