"""Shared fixtures: an isolated cache per test, and access to the staged datasets under LMREC_DATA."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

from lmrec.settings import require_data

# Where tests find staged data, captured before any test changes the environment.
STAGED = os.environ.get("LMREC_DATA")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own cache folder and no progress bars; LMREC_DATA is unset unless a test sets it."""
    monkeypatch.setenv("LMREC_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("LMREC_PROGRESS", "0")
    monkeypatch.delenv("LMREC_DATA", raising=False)


def staged_folder(name: str) -> Path:
    """The staged dataset folder ``name``; skips (or fails under LMREC_REQUIRE_DATA=1) when absent."""
    if not STAGED:
        reason = f"LMREC_DATA is not set; set it to the data home holding '{name}/' to run this test"
        if require_data():
            pytest.fail(reason)
        pytest.skip(reason)
    folder = Path(STAGED) / name
    if not folder.is_dir():
        reason = f"dataset folder {folder} is missing"
        if require_data():
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.fixture
def staged_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """LMREC_DATA pointed at the staged data home (skips when there is none)."""
    staged_folder("movielens-100k")
    monkeypatch.setenv("LMREC_DATA", STAGED)  # type: ignore[arg-type]
    return Path(STAGED)  # type: ignore[arg-type]


def optional_extra(module: str, extra: str) -> ModuleType:
    """Import an optional extra's module; skip without it, or fail under LMREC_REQUIRE_EXTRAS=1 (CI installs
    every extra, so its tests can never pass by skipping)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed (pip install 'lmrec[{extra}]')"
        if os.environ.get("LMREC_REQUIRE_EXTRAS") == "1":
            pytest.fail(f"{reason}, and LMREC_REQUIRE_EXTRAS=1")
        pytest.skip(reason)
