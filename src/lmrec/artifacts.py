"""Self-describing run directories: ``runs/<id>/`` with the config and everything a run produced."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import yaml

from lmrec import __version__


def new_run_dir(root: str | Path, label: str) -> Path:
    """A fresh, uniquely named folder ``root/<UTC time>-<label>`` (suffixed if it already exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = Path(root) / f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', label).strip('-')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_config(run_dir: Path, config: dict[str, Any]) -> Path:
    """``config.yaml``: what was run, with the lmrec version, so the run can be repeated."""
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump({"lmrec_version": __version__, **config}, sort_keys=False))
    return path
