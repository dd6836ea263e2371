"""Where lmrec finds datasets and keeps its caches; the only place that reads these environment variables.

- data home: ``--data-dir`` (passed in), else ``$LMREC_DATA``, else ``~/.cache/lmrec/datasets``.
  A dataset named N lives in folder N of the data home.
- cache home: ``$LMREC_CACHE``, else ``~/.cache/lmrec``. Prepared datasets go under ``prepared/``.
  The data home may be read-only (a shared folder), so nothing is ever written there except downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path("~/.cache/lmrec").expanduser()


def data_home(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds one sub-folder per dataset."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("LMREC_DATA")
    if env:
        return Path(env).expanduser()
    return DEFAULT_HOME / "datasets"


def data_home_source(data_dir: str | os.PathLike[str] | None = None) -> str:
    """How the data home was chosen, for error messages."""
    if data_dir is not None:
        return "--data-dir"
    if os.environ.get("LMREC_DATA"):
        return "$LMREC_DATA"
    return "the default (LMREC_DATA is not set)"


def cache_home() -> Path:
    """The folder for derived files (prepared datasets, embedding caches)."""
    env = os.environ.get("LMREC_CACHE")
    return Path(env).expanduser() if env else DEFAULT_HOME


def require_data() -> bool:
    """True when a missing dataset must fail (CI) instead of being skipped (a user's fresh machine)."""
    return os.environ.get("LMREC_REQUIRE_DATA", "") not in ("", "0", "false", "no")
