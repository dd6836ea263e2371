"""lmrec: carry the knowledge of pretrained language models into recommender systems.

Public API re-exports only; see ``lmrec.data`` for the data layer.
"""

__version__ = "0.1.0"

from lmrec.errors import ConfigError, DataError, DatasetNotFound, LmrecError  # noqa: E402

__all__ = ["ConfigError", "DataError", "DatasetNotFound", "LmrecError", "__version__"]
