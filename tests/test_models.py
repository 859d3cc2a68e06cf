import pytest
import torch

from conftest import compiled_kernel
from release_reference import random_authors_prenet, random_authors_sian, release_prenet, release_sian
from sian.convert import convert_authors_state_dict
from sian.models import SIAN, ConvLSTMCell, PReNet, create_model, get_variant, list_models
from sian.models.sian_arch import CoarseToFine
from sian.weights import load_state_dict_checked


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [(120, 120), (97, 83)])
@pytest.mark.slow
def test_every_registered_model_runs_forward_and_backward(name, size):
    model = create_model(name).train()
    rainy = torch.rand(1, 3, *size)
    outputs = model(rainy)
    assert isinstance(outputs, list) and len(outputs) == model.config["stages"]
    assert all(o.shape == rainy.shape for o in outputs)
    sum(o.mean() for o in outputs).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    model.eval()
    with torch.no_grad():
        last = model(rainy)
    assert torch.is_tensor(last) and last.shape == rainy.shape
    torch.testing.assert_close(last, outputs[-1].detach())


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_traces_into_one_graph_for_inference(name):
    """torch.compile of a model must not fall back to eager: SIAN's streamed DoG stacks write into channel
    slices (`out=`), which Dynamo cannot trace, so under compilation the scale space takes the concatenation."""
    model = create_model(name).eval().to(memory_format=torch.channels_last)  # as the Pipeline runs it
    with torch.inference_mode():
        explanation = torch._dynamo.explain(model)(
            torch.rand(1, 3, 20, 24).contiguous(memory_format=torch.channels_last)
        )
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_ablation_variants_have_the_table_v_structure():
    assert get_variant("sian_baseline").config == {"stages": 1, "attention": False, "recurrent": False}
    baseline, lstm, full = (create_model(n) for n in ("sian_baseline", "sian_baseline_lstm", "sian"))
    assert baseline.scale_space is None and all(level.lstm is None for level in baseline.levels)
    assert lstm.scale_space is None and all(level.lstm is not None for level in lstm.levels)
    assert full.scale_space is not None and full.config["stages"] == 6
    assert create_model("sian_paper").scale_space.mode == "full"


def test_parameter_counts_match_the_releases():
    release_sian_params, dead_conv_m = 510_435, 18_496
    assert sum(p.numel() for p in create_model("sian").parameters()) == release_sian_params - dead_conv_m
    assert sum(p.numel() for p in create_model("prenet").parameters()) == 168_963


@pytest.mark.slow
@pytest.mark.parametrize("size", [(24, 24), (29, 22)])
def test_sian_equals_a_direct_statement_of_the_release_on_converted_weights(size):
    authors = random_authors_sian()
    arch, ours = convert_authors_state_dict(authors)
    assert arch == "sian" and not any("conv_m" in k for k in ours)
    model = SIAN().double()
    load_state_dict_checked(model, ours)
    rainy = torch.rand(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        expected = release_sian(authors, rainy)
        got = model(rainy, return_all=True)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_prenet_equals_a_direct_statement_of_the_release_on_converted_weights():
    authors = random_authors_prenet()
    arch, ours = convert_authors_state_dict(authors)
    assert arch == "prenet"
    model = PReNet().double()
    load_state_dict_checked(model, ours)
    rainy = torch.rand(1, 3, 17, 13, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(model(rainy, return_all=True), release_prenet(authors, rainy), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_coarse_to_fine_pads_odd_sizes_floor_half_before():
    fusion = CoarseToFine(1)
    with torch.no_grad():
        fusion.conv.weight.zero_()
        fusion.conv.weight[0, 1, 1, 1] = 1.0  # output = relu(upsampled map)
        fusion.conv.bias.zero_()
    fine = torch.zeros(1, 1, 7, 5)
    coarse = torch.ones(1, 1, 2, 1)  # upsampled to 4x2, padded by (1, 2) rows and (1, 2) columns
    out = fusion(fine, coarse)[0, 0]
    expected = torch.zeros(7, 5)
    expected[1:5, 1:3] = 1.0
    torch.testing.assert_close(out, expected)


def test_convlstm_gradcheck_float64():
    cell = ConvLSTMCell(2, 3).double()
    x = torch.rand(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    h = torch.rand(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    c = torch.rand(1, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, d: cell(a, (b, d)), (x, h, c))


@pytest.fixture
def fused_convlstm():
    """The compiled ConvLSTM update (sian/_native/convlstm.c); skipped where this machine cannot build it."""
    from sian import _native

    return compiled_kernel(_native.convlstm_library, "the compiled ConvLSTM update")


def _cell_steps(cell, x, monkeypatch, fused: bool):
    """Two steps of ``cell`` (zero state, then carried), through the compiled update or PyTorch's operations."""
    from sian.models import layers

    with monkeypatch.context() as patch:
        if not fused:
            patch.setattr(layers, "convlstm_library", lambda: None)
        first = cell(x)
        return first, cell(x, first)


@pytest.mark.parametrize("channels", [16, 5])  # a whole number of vectors, and a remainder
def test_fused_convlstm_update_equals_pytorchs_in_float32(fused_convlstm, monkeypatch, channels):
    """Gates from -60 to +60 (saturated sigmoids both ways) and batch 2: the same h and c to float rounding."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, channels).eval()
    x = (torch.randn(2, 3, 11, 9) * torch.logspace(-2, 1.5, 9)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = _cell_steps(cell, x, monkeypatch, fused=True)
        expected = _cell_steps(cell, x, monkeypatch, fused=False)
    for a, b in zip([*got[0], *got[1]], [*expected[0], *expected[1]], strict=True):
        assert a.dtype == torch.float32 and a.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    x[1, :, 4, 4] = float("nan")  # a NaN spreads as PyTorch spreads it, and nowhere else
    with torch.no_grad():
        got, expected = cell(x), _cell_steps(cell, x, monkeypatch, fused=False)[0]
    for a, b in zip(got, expected, strict=True):
        assert a.isnan().any() and torch.equal(a.isnan(), b.isnan())


def test_fused_convlstm_update_in_bf16_rounds_once(fused_convlstm, monkeypatch):
    """Under autocast the PyTorch update rounds to bfloat16 after each of its six operations, the compiled one
    once at the end: its h and c are bfloat16 as before and closer to the float64 update."""
    torch.manual_seed(0)
    cell = ConvLSTMCell(8, 16).eval()
    x = torch.randn(1, 8, 24, 20).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        exact = _cell_steps(cell.double(), x.double(), monkeypatch, fused=False)[1]
        cell.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = _cell_steps(cell, x, monkeypatch, fused=True)[1]
            pytorch = _cell_steps(cell, x, monkeypatch, fused=False)[1]
    for a, b, e in zip(got, pytorch, exact, strict=True):
        assert a.dtype == b.dtype == torch.bfloat16
        assert (a.double() - e).abs().mean() < 0.75 * (b.double() - e).abs().mean()
        torch.testing.assert_close(a.double(), e, rtol=0, atol=0.02)


def test_fused_convlstm_update_serves_only_inference(fused_convlstm, monkeypatch):
    """Training (autograd records), NCHW maps, float64, a state of another dtype and dispatch modes (torch's FLOP
    counter, tracers) must see PyTorch's operations."""
    from torch.utils.flop_counter import FlopCounterMode

    from sian.models import layers

    calls = []
    real = layers._fused_update
    monkeypatch.setattr(layers, "_fused_update", lambda *args: calls.append(1) or real(*args))
    cell = ConvLSTMCell(2, 4).to(memory_format=torch.channels_last)
    x = torch.rand(1, 2, 6, 5).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        state = cell(x)
        cell(x, state)
        assert len(calls) == 2
        ConvLSTMCell(2, 4)(torch.rand(1, 2, 6, 5))  # NCHW gates
        cell.double()(x.double())
        cell.float()(x, (state[0], state[1].double()))
        with FlopCounterMode(display=False) as flops:
            cell(x)
    cell(x)  # autograd records
    assert len(calls) == 2 and flops.get_total_flops() > 0


@pytest.fixture
def pyramid_kernels():
    """SIAN's compiled pyramid steps (sian/_native/pyramid.c); skipped where this machine cannot build them."""
    from sian import _native

    return compiled_kernel(_native.pyramid_library, "the compiled pyramid kernels")


def _pyramid_step(step, *maps, monkeypatch, compiled: bool):
    """``step`` (attend or upsample_concat) through the compiled kernel or PyTorch's operations; the inputs are
    cloned (PyTorch's attend takes the sigmoid in place)."""
    from sian.models import sian_arch

    with monkeypatch.context() as patch, torch.no_grad():
        if not compiled:
            patch.setattr(sian_arch, "pyramid_library", lambda: None)
        return step(*(m.clone() for m in maps))


def _channels_last(*shape, scale=1.0, dtype=torch.float32):
    return (torch.randn(*shape) * scale).to(dtype).contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [32, 5])  # a whole number of vectors, and a remainder
@pytest.mark.parametrize("size", [(321, 481), (8, 9), (7, 5), (2, 3)])  # even, odd and smallest fine sizes
def test_compiled_upsample_concat_equals_pytorchs(pyramid_kernels, monkeypatch, channels, size):
    """The same concatenation as F.interpolate (bilinear, align_corners), F.pad and torch.cat: float32 to an ulp of
    the inputs (|x| < 6), bfloat16 to one bf16 rounding (both compute in float32 and round once), zeros where the
    pad is."""
    from sian.models.sian_arch import upsample_concat

    torch.manual_seed(0)
    fine, coarse = _channels_last(2, channels, *size), _channels_last(2, channels, size[0] // 2, size[1] // 2)
    padding = torch.ones(size, dtype=torch.bool)  # floor(d / 2) before the upsampled map, the rest after
    padding[: 2 * (size[0] // 2), : 2 * (size[1] // 2)] = False
    for dtype, rtol in ((torch.float32, 0.0), (torch.bfloat16, 2.0**-7)):
        maps = (fine.to(dtype), coarse.to(dtype))
        got = _pyramid_step(upsample_concat, *maps, monkeypatch=monkeypatch, compiled=True)
        expected = _pyramid_step(upsample_concat, *maps, monkeypatch=monkeypatch, compiled=False)
        assert got.dtype == dtype and got.shape == expected.shape == (2, 2 * channels, *size)
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(got[:, :channels], maps[0]) and (got[:, channels:, padding] == 0).all()
        torch.testing.assert_close(got.float(), expected.float(), rtol=rtol, atol=1e-6)


def test_compiled_attend_equals_pytorchs(pyramid_kernels, monkeypatch):
    """F + F * sigmoid(A) for logits from -90 to +90 (saturated both ways): float32 to 2 ulps, bfloat16 rounded
    once and no farther from the float64 result than PyTorch's (which rounds the mask first); a NaN spreads."""
    from sian.models.sian_arch import attend

    torch.manual_seed(0)
    features, logits = _channels_last(2, 19, 23, 17, scale=3.0), _channels_last(2, 19, 23, 17, scale=30.0)
    got = _pyramid_step(attend, features, logits, monkeypatch=monkeypatch, compiled=True)
    expected = _pyramid_step(attend, features, logits, monkeypatch=monkeypatch, compiled=False)
    torch.testing.assert_close(got, expected, rtol=2.0**-22, atol=1e-12)
    maps16 = (features.bfloat16(), logits.bfloat16())
    exact = _pyramid_step(attend, *(m.double() for m in maps16), monkeypatch=monkeypatch, compiled=False)
    got16 = _pyramid_step(attend, *maps16, monkeypatch=monkeypatch, compiled=True)
    pytorch16 = _pyramid_step(attend, *maps16, monkeypatch=monkeypatch, compiled=False)
    assert got16.dtype == torch.bfloat16
    assert (got16.double() - exact).abs().mean() <= (pytorch16.double() - exact).abs().mean()
    torch.testing.assert_close(got16.double(), exact, rtol=2.0**-8, atol=0)
    logits[1, 3, 4, 5] = float("nan")
    got = _pyramid_step(attend, features, logits, monkeypatch=monkeypatch, compiled=True)
    assert got.isnan().sum() == 1 and got[1, 3, 4, 5].isnan()


def test_compiled_pyramid_steps_serve_only_inference(pyramid_kernels, monkeypatch):
    """Training (autograd records), NCHW maps, float64, a fine map smaller than twice the coarse one and dispatch
    modes (torch's FLOP counter, tracers) must see PyTorch's operations; a whole SIAN forward uses both kernels
    at every level and stage, and gives the output of PyTorch's operations."""
    from torch.utils.flop_counter import FlopCounterMode

    from sian.models import sian_arch

    calls = []

    class Counting:
        def __init__(self, library):
            self.library = library

        def __getattr__(self, name):
            calls.append(name)
            return getattr(self.library, name)

    from sian._native import ops

    real = sian_arch.pyramid_library()
    monkeypatch.setattr(ops, "pyramid_library", lambda: Counting(real))  # the custom operators call it
    fine, coarse = _channels_last(1, 4, 9, 8), _channels_last(1, 4, 4, 4)
    with torch.no_grad():
        sian_arch.upsample_concat(fine, coarse)
        sian_arch.attend(fine, fine.clone())
        assert calls.count("sian_upsample_concat") == calls.count("sian_attend") == 1
        calls.clear()
        sian_arch.upsample_concat(fine.contiguous(), coarse.contiguous())  # NCHW
        sian_arch.attend(fine.double(), fine.double())
        narrow = fine[..., :7].contiguous(memory_format=torch.channels_last)  # 7 columns cannot hold 2 x 4
        assert sian_arch.upsample_concat(narrow, coarse).shape == (1, 8, 9, 7)  # F.pad crops the extra column
        with FlopCounterMode(display=False):
            sian_arch.attend(fine, fine.clone())
    sian_arch.attend(fine.requires_grad_(), fine.detach().clone())  # autograd records
    assert not calls
    model = SIAN(channels=4, stages=2).eval().to(memory_format=torch.channels_last)
    rainy = torch.rand(1, 3, 27, 22).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = model(rainy)
        assert calls.count("sian_attend") == 6 and calls.count("sian_upsample_concat") == 4
        monkeypatch.setattr(sian_arch, "pyramid_library", lambda: None)
        torch.testing.assert_close(got, model(rainy), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_small_sian_gradcheck_float64():
    model = SIAN(channels=2, stages=2, kernel_mode="full").double()
    rainy = torch.rand(1, 3, 9, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x, return_all=False), (rainy,), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_dtype_follows_the_model(dtype):
    model = SIAN(channels=4, stages=2).to(dtype).eval()
    assert model(torch.rand(1, 3, 12, 12, dtype=dtype)).dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    model = SIAN(channels=8, stages=2).eval()
    x = torch.rand(1, 3, 40, 36)
    cpu = model(x)
    torch.testing.assert_close(model.cuda()(x.cuda()).cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_rejected_clearly():
    model = SIAN(channels=4, stages=1)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="smaller than the minimum 4x4"):
        model(torch.rand(1, 3, 3, 16))
    with pytest.raises(ValueError, match="kernel_mode"):
        SIAN(kernel_mode="wide")
    with pytest.raises(KeyError, match="unknown model variant"):
        create_model("sian_xl")


@pytest.mark.parametrize("size", [(40, 36), (33, 29)])
def test_optimised_inference_path_equals_the_straightforward_release_in_float32(size):
    """channels_last, the zero-state LSTM shortcut, DoG maps written in place into stacks reused across
    stages, the in-place gate activations and addcmul change no output beyond float32 rounding (issue:
    optimised outputs within 1e-5 of the straightforward ones)."""
    from sian.inference import derain_tensor

    authors = {k: v.float() for k, v in random_authors_sian(seed=3).items()}
    model = SIAN()
    load_state_dict_checked(model, convert_authors_state_dict(authors)[1])
    model = model.eval().to(memory_format=torch.channels_last)
    rainy = torch.rand(1, 3, *size)
    with torch.no_grad():
        expected = release_sian(authors, rainy)[-1]
    got = derain_tensor(model, rainy, memory_budget=None, precision="fp32")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_sian_forward_dispatches_no_more_operations_than_it_needs():
    """On a GPU every PyTorch operation costs a launch whatever its size (SIAN took 1.6-2.7x PReNet's
    time on an H200 against a FLOP ratio of 1.46). After its first forward SIAN dispatches 795 operations per
    forward (216 convolutions); 1276 before its DoG blurs stopped rebuilding their weights every time."""
    from sian.benchmark import operation_counts

    model = create_model("sian").eval()
    x = torch.rand(1, 3, 32, 28)
    with torch.inference_mode():
        model(x)
        counts = operation_counts(lambda: model(x))
    assert counts["conv2d"] == 216  # 20 layers and 16 blurs a stage, six stages
    assert sum(counts.values()) <= 800, counts.most_common(10)


def test_the_kernels_are_custom_operators_that_pass_torchs_checks():
    """Each compiled kernel is a PyTorch operator (torch.ops.sian.*) with a schema that says what it writes:
    torch.library.opcheck runs it under fake tensors, functionalization and the schema checker."""
    from sian._native import convlstm_library, dog_library, ops, pyramid_library

    for library, what in ((dog_library, "the DoG kernel"), (convlstm_library, "the ConvLSTM kernel"),
                          (pyramid_library, "the pyramid kernels")):  # fmt: skip
        compiled_kernel(library, what)
    fine, coarse = _channels_last(1, 4, 9, 8), _channels_last(1, 4, 4, 4)
    torch.library.opcheck(ops.attend.operator, (fine, fine.clone(), torch.empty_like(fine)))
    out = torch.empty(1, 8, 9, 8).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(ops.upsample_concat.operator, (fine, coarse, out))
    gates, cell = _channels_last(1, 16, 5, 6), _channels_last(1, 4, 5, 6)
    torch.library.opcheck(ops.convlstm_update.operator, (gates, cell, torch.empty_like(cell), torch.empty_like(cell)))
    weights = torch.full((6, 9), 1 / 9)
    seed = torch.empty(1, 4, 4, 4).contiguous(memory_format=torch.channels_last)
    stack = torch.empty(1, 20, 9, 8).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(ops.dog_octave.operator, (fine, weights, 6, 3, stack, seed))
    assert torch.ops.sian.attend.default is not None


@pytest.mark.slow
def test_torch_compile_calls_the_kernels_in_one_graph_and_gives_the_eager_output():
    """With the kernels built, a compiled SIAN holds them as operators (no graph break), and its output is the
    eager kernels' output; an export (ONNX) sees PyTorch operations instead (tests/test_export.py)."""
    from sian._native import convlstm_library, dog_library, pyramid_library

    for library in (dog_library, convlstm_library, pyramid_library):
        compiled_kernel(library, library.__name__)
    model = SIAN(channels=4, stages=2).eval().to(memory_format=torch.channels_last)
    rainy = _channels_last(1, 3, 27, 22)
    with torch.inference_mode():
        explanation = torch._dynamo.explain(model)(rainy)
        graph = "\n".join(str(g.graph) for g in explanation.graphs)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        for op in ("sian.dog_octave", "sian.convlstm_update", "sian.attend", "sian.upsample_concat"):
            assert op in graph, op
        torch.testing.assert_close(torch.compile(model, dynamic=False)(rainy), model(rainy), rtol=0, atol=1e-6)
