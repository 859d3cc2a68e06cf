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


RAINTRAINH_NAMES = [f"norain-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14)]


def write_raintrainh_like(folder: Path, size: tuple[int, int] = (40, 56)) -> Path:
    """Twelve pairs named like RainTrainH_12 (rain/ and norain/), each with its own gray rain added and clipped at
    255 as Rain100H's renderer does: streak columns of 90 levels, so bright backgrounds saturate under them."""
    import numpy as np
    from PIL import Image

    for sub in ("rain", "norain"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(RAINTRAINH_NAMES):
        rng = np.random.default_rng(index)
        clean = rng.integers(60, 256, (*size, 3)).astype(np.int16)
        rain = np.zeros(size, np.int16)
        rain[:, index % 5 :: 5] = 90 + 10 * index  # a different pattern and strength per pair
        rainy = np.clip(clean + rain[..., None], 0, 255)
        Image.fromarray(clean.astype(np.uint8)).save(folder / "norain" / f"{name}.png")
        Image.fromarray(rainy.astype(np.uint8)).save(folder / "rain" / f"{name}.png")
    return folder


@pytest.fixture
def rain_layers(tmp_path_factory, monkeypatch):
    """A RainTrainH-like folder as the ``raintrainh`` renderer's source (no ../shared needed)."""
    from sian.synth import layers

    folder = write_raintrainh_like(tmp_path_factory.mktemp("RainTrainH_12"))
    monkeypatch.setenv("SIAN_RAINTRAINH", str(folder))
    layers._pairs.cache_clear()
    layers._layer.cache_clear()
    yield folder
    layers._pairs.cache_clear()
    layers._layer.cache_clear()
