import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sian.metrics import psnr_y, quantize, rgb_to_y, ssim_y


def test_y_is_matlab_bt601_studio_luminance():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    expected = [16 + 65.481, 16 + 128.553, 16 + 24.966, 16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255]
    np.testing.assert_allclose(rgb_to_y(rgb)[0], expected, rtol=0, atol=1e-12)


def test_psnr_by_hand():
    clean = np.full((8, 8, 3), 100, dtype=np.uint8)
    noisy = clean.copy()
    noisy[0, 0] = [110, 110, 110]  # Y differs by 10 * (65.481 + 128.553 + 24.966) / 255 at one pixel of 64
    dy = 10 * 219.0 / 255
    assert psnr_y(noisy, clean) == pytest.approx(10 * math.log10(255**2 / (dy**2 / 64)), abs=1e-10)


def test_psnr_of_identical_images_is_infinite():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert psnr_y(image, image) == math.inf
    assert ssim_y(image, image) == pytest.approx(1.0)


def test_ssim_of_constant_images_by_hand():
    # Constant images: both variances and the covariance are 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a_rgb, b_rgb = 200, 50
    a, b = (16 + v * 219.0 / 255 for v in (a_rgb, b_rgb))
    c1 = (0.01 * 255) ** 2
    x = np.full((20, 20, 3), a_rgb, dtype=np.uint8)
    y = np.full((20, 20, 3), b_rgb, dtype=np.uint8)
    assert ssim_y(x, y) == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), abs=1e-12)


def direct_ssim(x, y):
    """Wang et al. 2004 computed window by window: 11x11 Gaussian (sigma 1.5), population statistics,
    only windows that lie entirely inside the image (the 'valid' region)."""
    r = np.arange(-5, 6)
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx**2, (w * py * py).sum() - my**2
            cov = (w * px * py).sum() - mx * my
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_window_by_window_computation_not_skimage_defaults():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (23, 19, 3), dtype=np.uint8)
    noisy = np.clip(clean.astype(int) + rng.integers(-40, 41, clean.shape), 0, 255).astype(np.uint8)
    expected = direct_ssim(rgb_to_y(noisy), rgb_to_y(clean))
    assert ssim_y(noisy, clean) == pytest.approx(expected, abs=1e-12)
    # The skimage-defaults trap: a 7x7 uniform window with sample covariance is a different number.
    defaults = structural_similarity(rgb_to_y(noisy), rgb_to_y(clean), data_range=255)
    assert abs(defaults - expected) > 1e-3


def test_quantize_round_versus_floor():
    values = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.3, 0.999]]], dtype=np.float32)
    assert quantize(values, "round").tolist() == [[[0, 128, 255], [0, 255, 255]]]
    assert quantize(values, "floor").tolist() == [[[0, 127, 255], [0, 255, 254]]]
    tensor = torch.from_numpy(values).permute(2, 0, 1)[None]
    assert np.array_equal(quantize(tensor, "floor"), quantize(values, "floor"))
    with pytest.raises(ValueError, match="quantize mode"):
        quantize(values, "ceil")


def test_metrics_reject_mismatched_or_tiny_images():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_y(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_y(np.zeros((8, 20, 3), np.uint8), np.zeros((8, 20, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        rgb_to_y(np.zeros((4, 4), np.uint8))
