import math
import platform

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from conftest import compiled_kernel
from sian import _native, scale_space
from sian.benchmark import operation_counts
from sian.scale_space import DoGPyramid, dog_pyramid, gaussian_blur, gaussian_kernels, sift_sigmas

DOCUMENTED_SIGMAS = [1.5199, 1.2263, 1.5450, 1.9466, 2.4525, 3.0900]


def test_sift_sigmas_match_the_documented_values():
    assert sift_sigmas(1.6, 3) == pytest.approx(DOCUMENTED_SIGMAS, abs=1e-4)
    # Composing the pre-blur with the incremental blurs gives total blur 1.6 * k**i over the assumed 0.5.
    sig = sift_sigmas(1.6, 3)
    total = math.sqrt(0.5**2 + sig[0] ** 2)
    for i, s in enumerate(sig[1:], 1):
        total = math.sqrt(total**2 + s**2)
        assert total == pytest.approx(1.6 * 2 ** (i / 3))


@pytest.mark.parametrize("mode", ["release", "full"])
def test_kernels_sum_to_one_and_are_symmetric(mode):
    for kernel in gaussian_kernels(sift_sigmas(), mode):
        assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
        assert torch.equal(kernel, kernel.flip(0))
        assert kernel.numel() % 2 == 1


def test_full_kernels_have_radius_three_sigma():
    sizes = [k.numel() for k in gaussian_kernels(sift_sigmas(), "full")]
    assert sizes == [2 * math.ceil(3 * s) + 1 for s in sift_sigmas()] == [11, 9, 11, 13, 17, 21]
    assert all(k.numel() == 3 for k in gaussian_kernels(sift_sigmas(), "release"))


def documented_3x3(sigma):
    """The release's kernel, computed directly: the 2-D Gaussian at offsets -1, 0, 1, normalised."""
    offsets = np.arange(-1, 2)
    grid = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    return torch.from_numpy(grid / grid.sum())


def direct_release_pyramid(x, octaves=3):
    """The release's scale space step by step with full 2-D 3x3 kernels and zero padding."""
    channels = x.shape[1]

    def blur(t, sigma):
        weight = documented_3x3(sigma).to(t).expand(channels, 1, 3, 3)
        return F.conv2d(t, weight, padding=1, groups=channels)

    sig = sift_sigmas()
    first = blur(x, sig[0])
    dogs = []
    for _ in range(octaves):
        images = [first]
        for s in sig[1:]:
            images.append(blur(images[-1], s))
        dogs.append([images[i + 1] - images[i] for i in range(5)])
        first = F.max_pool2d(images[3], 2)
    return dogs


@pytest.mark.slow
@pytest.mark.parametrize("size", [(16, 16), (97, 83)])
def test_release_mode_matches_direct_computation_with_documented_order(size):
    x = torch.rand(2, 4, *size, dtype=torch.float64)
    ours = dog_pyramid(x, octaves=3, intervals=3, sigma=1.6, mode="release")
    direct = direct_release_pyramid(x)
    for octave, (stack, maps) in enumerate(zip(ours, direct, strict=True)):
        h, w = size[0] // 2**octave, size[1] // 2**octave
        assert stack.shape == (2, 4 * 5, h, w)
        for level, dog in enumerate(maps):  # DoG l occupies channels [l*C, (l+1)*C)
            torch.testing.assert_close(stack[:, level * 4 : (level + 1) * 4], dog, rtol=0, atol=1e-12)


def test_release_blur_uses_zero_padding():
    x = torch.ones(1, 1, 5, 5, dtype=torch.float64)
    out = gaussian_blur(x, gaussian_kernels([1.6])[0], "zeros")
    assert out[0, 0, 2, 2].item() == pytest.approx(1.0)
    assert out[0, 0, 0, 0].item() < 0.7  # the corner loses the weight that fell on the zero border


def test_full_mode_preserves_constants_and_works_on_tiny_octaves():
    x = torch.full((1, 3, 9, 7), 0.25, dtype=torch.float64)
    for stack in dog_pyramid(x, mode="full"):  # octave 3 is 2x1: far below the 21-tap kernel
        torch.testing.assert_close(stack, torch.zeros_like(stack), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_module_twin_equals_functional_and_has_no_parameters():
    x = torch.rand(1, 3, 20, 18)
    module = DoGPyramid(octaves=3, intervals=3, sigma=1.6, mode="full")
    assert list(module.parameters()) == []
    assert module.state_dict() == {}  # fixed kernels are not saved with weights
    for a, b in zip(module(x), dog_pyramid(x, mode="full"), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    for stack in DoGPyramid()(torch.rand(1, 2, 12, 12, dtype=dtype)):
        assert stack.dtype == dtype


@pytest.mark.parametrize("mode", ["release", "full"])
@pytest.mark.slow
def test_gradcheck(mode):
    x = torch.rand(1, 2, 9, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dog_pyramid(t, octaves=2, mode=mode), (x,))


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="kernel mode"):
        DoGPyramid(mode="bogus")


def test_reuse_writes_over_the_previous_stacks_with_fresh_values():
    pyramid = DoGPyramid()
    first_input, second_input = torch.rand(1, 4, 20, 18), torch.rand(1, 4, 20, 18)
    with torch.no_grad():
        reuse: list[torch.Tensor] = []
        first = pyramid(first_input, reuse)
        assert [t.data_ptr() for t in reuse] == [t.data_ptr() for t in first]
        second = pyramid(second_input, reuse)
        assert [t.data_ptr() for t in second] == [t.data_ptr() for t in first]  # no new allocation
        for got, expected in zip(second, pyramid(second_input), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        resized = pyramid(torch.rand(1, 4, 12, 10), reuse)  # another size: fresh stacks, list updated
        assert [tuple(t.shape) for t in resized] == [(1, 20, 12, 10), (1, 20, 6, 5), (1, 20, 3, 2)]
        assert reuse[0] is resized[0]


def test_reuse_is_ignored_when_a_gradient_is_needed():
    x = torch.rand(1, 2, 8, 8, requires_grad=True)
    reuse: list[torch.Tensor] = []
    stacks = DoGPyramid()(x, reuse)
    assert reuse == [] and stacks[0].requires_grad
    stacks[0].sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("mode", ["release", "full"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_inference_stacks_equal_the_autograd_ones_bit_for_bit(mode, layout, monkeypatch):
    """Without autograd the stacks are computed octave by octave, two Gaussians alive at a time (less memory
    for large tiles); the numbers must be exactly those of the path training differentiates."""
    monkeypatch.setattr(scale_space, "dog_library", lambda: None)  # the PyTorch path (the fused one: below)
    x = torch.rand(2, 4, 21, 26).contiguous(memory_format=layout)
    with torch.no_grad():
        streamed = DoGPyramid(mode=mode)(x)
    recorded = DoGPyramid(mode=mode)(x.clone().requires_grad_())
    for a, b in zip(streamed, recorded, strict=True):
        assert a.is_contiguous(memory_format=layout)
        assert torch.equal(a, b.detach())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["release", "full"])
def test_blur_weights_are_built_once_per_module_not_per_blur(mode):
    """Bug (found on a GPU): every blur rebuilt its depthwise weights from the 1-D kernel (cast, outer
    product, expand), five small operations each, 480 of SIAN's 1276 per forward; on a GPU each costs a launch.
    A DoGPyramid builds them once per dtype, device and width; after that a blur is its convolution(s) alone."""
    pyramid = DoGPyramid(octaves=3, intervals=3, mode=mode)
    x = torch.rand(1, 4, 24, 20)
    with torch.no_grad():
        first = operation_counts(lambda: pyramid(x))
        again = operation_counts(lambda: pyramid(x))
    blurs = 1 + 3 * 5  # the pre-blur, then five per octave
    assert again["convolution"] == blurs * (1 if mode == "release" else 2)  # conv2d, as no_grad dispatches it
    assert not {"mul", "expand", "unsqueeze", "_to_copy"} & set(again), again
    assert sum(first.values()) > sum(again.values())  # the first call built them
    with torch.no_grad():
        for a, b in zip(pyramid(x), dog_pyramid(x, mode=mode), strict=True):
            assert torch.equal(a, b)  # the cached weights are the ones the functional builds per call
        pyramid(x.double())  # another dtype: its own weights, the float32 ones kept
    assert {key[1] for key in pyramid._blur_weights} == {torch.float32, torch.float64}


def test_blur_weights_cached_under_inference_mode_serve_training():
    """Validation runs under inference_mode between training steps: the weights it caches must be ordinary
    tensors, or the next training step's backward fails ("Inference tensors cannot be saved for backward")."""
    pyramid = DoGPyramid()
    x = torch.rand(1, 2, 16, 16)
    with torch.inference_mode():
        pyramid(x)
    leaf = x.clone().requires_grad_()
    pyramid(leaf)[0].sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


@pytest.fixture
def fused():
    """The compiled DoG kernel (sian/_native/dog.c); skipped where this machine cannot build it."""
    return compiled_kernel(_native.dog_library, "the fused DoG kernel")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("shape", "octaves"),
    [((1, 32, 161, 240), 3), ((3, 5, 37, 29), 3), ((2, 4, 4, 4), 3), ((1, 3, 4, 7), 3), ((1, 2, 5, 1), 1),
     ((1, 2, 1, 5), 1), ((2, 3, 1, 1), 1), ((1, 2, 40, 9), 2)],
)  # fmt: skip
def test_fused_kernel_gives_the_pytorch_stacks(fused, shape, octaves, threads, monkeypatch):
    """Every octave, size (odd, one pixel wide, bands of rows per thread) and batch: the PyTorch path's numbers
    to float rounding, in a channels_last stack like its own."""
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = DoGPyramid(octaves=octaves)(x)
            monkeypatch.setattr(scale_space, "dog_library", lambda: None)
            expected = DoGPyramid(octaves=octaves)(x)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and a.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("shape", "octaves"), [((1, 32, 161, 240), 3), ((3, 5, 37, 29), 3), ((1, 2, 5, 1), 1), ((2, 3, 1, 1), 1)]
)
def test_fused_kernel_in_bf16_is_the_float32_stack_rounded_once(fused, shape, octaves, threads):
    """Autocast inference hands the pyramid bfloat16 maps: the kernel widens them, computes in float32 and
    rounds each difference once (the seeds between octaves stay float32), so its bfloat16 stacks are exactly
    the float32 kernel's stacks of the widened map, rounded to nearest-even."""
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last).bfloat16()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = DoGPyramid(octaves=octaves)(x)
            widened = DoGPyramid(octaves=octaves)(x.float())
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(got, widened, strict=True):
        assert a.dtype == torch.bfloat16 and a.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b.bfloat16())


@pytest.mark.parametrize("march", ["native", "x86-64"])
def test_fused_kernel_rounds_to_bf16_as_torch_does_with_and_without_avx512_bf16(fused, march, monkeypatch, tmp_path):
    """The kernel's own round-to-nearest-even (CPUs without AVX512-BF16 run it, `-march=x86-64`) and the
    instruction's (`native` where the CPU has it) give torch's .bfloat16() bit for bit, ties, huge values
    overflowing to inf and NaN from inf - inf included."""
    if march != "native" and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("-march=x86-64 names an x86-64 baseline")
    monkeypatch.setenv("SIAN_CACHE", str(tmp_path))
    flags = tuple(f"-march={march}" if flag == "-march=native" else flag for flag in _native.FLAGS)
    monkeypatch.setattr(_native, "FLAGS", flags)
    _native.dog_library.cache_clear()
    try:
        if _native.dog_library() is None:
            pytest.skip(f"could not build the kernel with -march={march}")
        x = torch.randn(2, 16, 23, 19) * torch.logspace(-30, 38, 23).view(1, 1, 23, 1)
        x[0, :, 5, 5], x[1, 3, 7, :] = float("inf"), float("-inf")
        x = x.contiguous(memory_format=torch.channels_last).bfloat16()
        with torch.no_grad():
            got, widened = DoGPyramid()(x), DoGPyramid()(x.float())
        assert got[0].isnan().any() and got[0].isinf().any()
        for a, b in zip(got, widened, strict=True):
            expected = b.bfloat16()
            assert torch.equal(a.isnan(), expected.isnan())
            number = ~a.isnan()  # NaN payloads may differ; every other value bit for bit, infinities included
            assert torch.equal(a[number].view(torch.int16), expected[number].view(torch.int16))
    finally:
        _native.dog_library.cache_clear()


def test_fused_kernel_in_bf16_is_closer_to_float32_than_pytorchs_bf16_blurs(fused, monkeypatch):
    """PyTorch's bfloat16 path rounds every Gaussian image before subtracting neighbours that differ little;
    the kernel rounds only the differences."""
    x = torch.randn(1, 8, 64, 48).contiguous(memory_format=torch.channels_last).bfloat16()
    with torch.no_grad():
        exact = DoGPyramid()(x.double())
        fused_error = [(a.double() - e).abs().mean() for a, e in zip(DoGPyramid()(x), exact, strict=True)]
        monkeypatch.setattr(scale_space, "dog_library", lambda: None)
        pytorch_error = [(a.double() - e).abs().mean() for a, e in zip(DoGPyramid()(x), exact, strict=True)]
    assert all(f < p / 2 for f, p in zip(fused_error, pytorch_error, strict=True))


def test_fused_kernel_ignores_torchs_default_dtype(fused):
    """The kernel reads float32 weights and seeds; they were made in torch's default dtype, so after
    torch.set_default_dtype(torch.float64) octaves 1 and 2 came out wrong by up to 0.27."""
    x = torch.randn(1, 8, 40, 30).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = DoGPyramid()(x)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            got = DoGPyramid()(x)
        finally:
            torch.set_default_dtype(previous)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_fused_kernel_serves_only_what_it_computes(fused, monkeypatch):
    calls = []
    monkeypatch.setattr(scale_space, "_fused_dogs", lambda *args, **kwargs: calls.append(1) or [])
    x = torch.rand(1, 4, 12, 12)
    with torch.no_grad():
        DoGPyramid()(x.contiguous(memory_format=torch.channels_last))
        assert len(calls) == 1
        DoGPyramid()(x)  # NCHW
        DoGPyramid(mode="full")(x.contiguous(memory_format=torch.channels_last))  # wide, replicate-padded blurs
        DoGPyramid()(x.double().contiguous(memory_format=torch.channels_last))
    DoGPyramid()(x.contiguous(memory_format=torch.channels_last).requires_grad_())  # autograd records
    with torch.no_grad(), FlopCounterMode(display=False) as flops:  # a dispatch mode must see every operation
        DoGPyramid()(x.contiguous(memory_format=torch.channels_last))
    assert len(calls) == 1 and flops.get_total_flops() > 0


def test_fused_kernel_reuses_the_stacks(fused):
    x = torch.rand(1, 4, 20, 18).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reuse: list[torch.Tensor] = []
        first = DoGPyramid()(x, reuse)
        again = DoGPyramid()(x * 2, reuse)
    assert [t.data_ptr() for t in again] == [t.data_ptr() for t in first]
    torch.testing.assert_close(again[0], DoGPyramid()(x * 2)[0])


def test_without_a_compiler_or_when_turned_off_the_pytorch_path_runs(monkeypatch, tmp_path):
    from sian.models import ConvLSTMCell
    from sian.models.sian_arch import upsample_concat

    libraries = (_native.dog_library, _native.convlstm_library, _native.pyramid_library)
    monkeypatch.setenv("SIAN_CACHE", str(tmp_path))
    try:
        for library in libraries:
            library.cache_clear()
        monkeypatch.setenv("SIAN_NATIVE", "0")
        assert all(library() is None for library in libraries)
        for library in libraries:
            library.cache_clear()
        monkeypatch.delenv("SIAN_NATIVE")
        monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
        assert all(library() is None for library in libraries) and not list(tmp_path.rglob("*.so"))
        x = torch.rand(1, 4, 12, 12).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            stacks = DoGPyramid()(x)
            hidden, cell = ConvLSTMCell(4, 3)(x)
            fusion_input = upsample_concat(x, x[..., :6, :6].contiguous(memory_format=torch.channels_last))
        assert [s.shape[1] for s in stacks] == [20, 20, 20] and hidden.shape == cell.shape == (1, 3, 12, 12)
        assert fusion_input.shape == (1, 8, 12, 12)
    finally:
        for library in libraries:
            library.cache_clear()
