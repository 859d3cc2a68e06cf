"""Property-based tests (hypothesis): metric laws, model shape invariants, and a bounded loader fuzz."""

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from sian.io import ImageReadError, read_picture
from sian.metrics import psnr_y, ssim_y
from sian.models import create_model

images = st.tuples(st.integers(11, 24), st.integers(11, 24)).flatmap(
    lambda hw: arrays(np.uint8, (*hw, 3), elements=st.integers(0, 255))
)
pairs = st.tuples(st.integers(11, 20), st.integers(11, 20)).flatmap(
    lambda hw: st.tuples(*(arrays(np.uint8, (*hw, 3), elements=st.integers(0, 255)) for _ in range(2)))
)


@settings(max_examples=40, deadline=None)
@given(images)
def test_identity_gives_infinite_psnr_and_ssim_one(image):
    assert psnr_y(image, image) == math.inf
    assert ssim_y(image, image) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(images, st.integers(1, 40))
def test_psnr_of_a_uniform_shift_matches_the_closed_form(image, shift):
    """Adding ``shift`` to R, G and B moves studio Y by ``shift * 219 / 255`` everywhere (no clipping), so
    the PSNR is ``20 log10(255 / (shift * 219 / 255))``: a value the metric does not compute this way."""
    base = np.clip(image, 0, 255 - shift)
    shifted = base + np.uint8(shift)
    expected = 20 * math.log10(255 / (shift * 219 / 255))
    assert psnr_y(shifted, base) == pytest.approx(expected, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(pairs.map(lambda p: (np.clip(p[0], 60, 195), p[1].astype(np.int16) % 31 - 15)))
def test_psnr_falls_and_ssim_stays_bounded_as_the_same_error_grows(pair):
    image, noise = pair
    if not np.any(noise @ np.array([65.481, 128.553, 24.966])):
        return  # this noise leaves Y unchanged
    small = (image + noise).astype(np.uint8)
    large = (image + 3 * noise).astype(np.uint8)  # 60..195 +- 45 stays in 0..255: no clipping
    assert psnr_y(large, image) < psnr_y(small, image) < math.inf
    assert -1.0 <= ssim_y(large, image) < 1.0 and -1.0 <= ssim_y(small, image) < 1.0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 37), st.integers(1, 37), st.integers(1, 2), st.sampled_from(["sian", "prenet"]))
def test_models_keep_every_input_size_and_batch(height, width, batch, variant):
    from sian.inference import derain_tensor

    torch.manual_seed(0)
    model = create_model(variant, channels=4, stages=2).eval()
    x = torch.rand(batch, 3, height, width)
    out = derain_tensor(model, x)  # pads images below the model's minimum, crops back
    assert out.shape == x.shape and torch.isfinite(out).all()
    if min(height, width) >= getattr(model, "min_size", 1):
        with torch.inference_mode():
            stages = model(x, return_all=True)
        assert len(stages) == 2 and all(s.shape == x.shape for s in stages)


def _seed_files():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 20, 3), np.uint8)
    files = []
    for fmt, mode in [("PNG", "RGB"), ("JPEG", "RGB"), ("PNG", "RGBA"), ("BMP", "RGB"), ("TIFF", "RGB"),
                      ("WEBP", "RGB"), ("PNG", "P"), ("GIF", "P")]:  # fmt: skip
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
        files.append(buffer.getvalue())
    return files


SEEDS = _seed_files()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(range(len(SEEDS))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_fuzzed_files_either_load_or_raise_image_read_error(tmp_path, seed, flips, cut):
    """Bounded fuzz of the loader: mutated and truncated real files never escape as another exception."""
    data = bytearray(SEEDS[seed])
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    path = tmp_path / "fuzzed.img"
    path.write_bytes(bytes(data))
    try:
        picture = read_picture(path, max_pixels=10_000_000)
    except ImageReadError:
        return
    assert picture.rgb.ndim == 3 and picture.rgb.shape[2] == 3 and picture.rgb.dtype in (np.uint8, np.uint16)
