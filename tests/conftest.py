import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIAN_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared (override with SIAN_SHARED); skips the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need the project's shared data (set SIAN_SHARED)")
    return path


def compiled_kernel(library, what: str):
    """``library()``, one of sian._native's loaders; skips the test where this machine cannot build ``what``."""
    built = library()
    if built is None:
        pytest.skip(f"{what} could not be built here (no C compiler, or SIAN_NATIVE=0)")
    return built


@pytest.fixture(autouse=True)
def _isolated_weights_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty weights folder, never the user's cache."""
    monkeypatch.setenv("SIAN_HOME", str(tmp_path_factory.mktemp("sian_home")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
