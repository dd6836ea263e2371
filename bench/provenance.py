"""What every bench/results record carries: which commit, lmrec version, machine and date produced it.

Bench scripts run as ``python bench/NAME.py`` (this folder is on ``sys.path``) and merge ``stamp()`` into
each record they write.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from lmrec import __version__

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The checked-out commit, with ``-dirty`` when tracked files outside bench/results differ from it ("unknown"
    outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        # bench/results is left out: a script that merges records into a tracked results file would
        # otherwise mark every record after its first save as dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)bench/results"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def machine(device: str | None = None) -> str:
    """CPU architecture and cores, OS, Python and torch; the accelerator's name when one was used."""
    import torch

    text = (f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")
    if device and device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def stamp(device: str | None = None) -> dict[str, str]:
    """``commit``, ``lmrec_version``, ``machine``, ``date`` (UTC) for a results record."""
    return {"commit": commit(), "lmrec_version": __version__, "machine": machine(device),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
