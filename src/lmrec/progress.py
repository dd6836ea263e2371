"""The one helper through which library code shows progress (library code never prints)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

logger = logging.getLogger("lmrec")


def progress_enabled() -> bool:
    """Bars show on an interactive terminal unless ``LMREC_PROGRESS=0``; ``LMREC_PROGRESS=1`` forces them."""
    flag = os.environ.get("LMREC_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def report(message: str, *args: object) -> None:
    """A line about long work (a model fitted, an epoch done). With progress bars it is a detail (INFO);
    without them (output to a file or a CI log) it is the only sign of life, so it is shown (WARNING, the
    CLI's default level)."""
    logger.log(logging.INFO if progress_enabled() else logging.WARNING, message, *args)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap an iterable in a progress bar (on stderr) when progress is enabled."""
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=not progress_enabled(), leave=False))


def progress_bar(desc: str, total: int | None, unit: str = "B", enabled: bool = True) -> tqdm:
    """A manually updated bar, e.g. for downloads (``unit="B"`` scales to kB/MB); ``enabled=False`` hides it
    (e.g. in the processes of a distributed run other than rank 0)."""
    return tqdm(
        desc=desc, total=total, unit=unit, unit_scale=True, unit_divisor=1024,
        disable=not (enabled and progress_enabled()), leave=False,
    )
