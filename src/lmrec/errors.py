"""The one exception type a user can cause, and its few refinements.

Every error a user can provoke (a bad file, a missing column, an unknown dataset, a bad option) is a
``LmrecError`` whose message is a single line saying what is wrong and how to fix it. The CLI prints
that line without a traceback and exits non-zero.
"""

from __future__ import annotations


class LmrecError(Exception):
    """An error caused by input or configuration; its message tells the user what to fix."""


class DataError(LmrecError):
    """A data file is missing, malformed or empty (the message names the file and, where known, the line)."""


class DatasetNotFound(LmrecError):
    """A named dataset is unknown, or its files are not in the data home."""


class ConfigError(LmrecError):
    """An option or configuration value is invalid."""


class Unsupported(ConfigError):
    """The model cannot do what is asked (rank an item added after training, read free text); the message
    names a model that can."""


class ArtifactError(LmrecError):
    """A saved model, bundle or checkpoint is missing, corrupt, or from an lmrec that wrote another format
    (the message names the file and what is wrong)."""


def one_line(text: str) -> str:
    """Collapse whitespace so a message stays on one line."""
    return " ".join(str(text).split())
