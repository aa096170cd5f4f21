"""Exceptions raised by fgad for bad input.

Every error a user can cause derives from :class:`FgadError`; the command line turns it into one
line on stderr and a non-zero exit status instead of a traceback.
"""


class FgadError(Exception):
    """Base class of every error caused by input, configuration or files given by the user."""


class InputError(FgadError, ValueError):
    """Images, arrays or labels that cannot be used (wrong dtype, rank, size, empty, NaN...)."""


class ImageReadError(InputError):
    """An image file that cannot be read or decoded."""


class ConfigError(FgadError, ValueError):
    """Unknown configuration keys, wrong types, unknown preset, task, method or dataset names."""


class ModelFileError(FgadError):
    """A saved model that is missing, incomplete, or whose tensors do not match its config."""


class DatasetNotFoundError(FgadError, FileNotFoundError):
    """A dataset whose files are not where the adapter looks; the message says which to put where."""
