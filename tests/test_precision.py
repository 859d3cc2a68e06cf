"""The one precision decision (sian.precision) used by training, inference and `sian bench`."""

from pathlib import Path

import pytest
import torch

import sian.precision as precision_module
from sian.precision import PRECISIONS, PrecisionChoice, autocast, cpu_features, native_bf16, resolve_precision

CPU = torch.device("cpu")
AVX2_ONLY = {"amx_bf16": False, "avx512_bf16": False, "avx512_f": False, "avx2": True}
AMX = {"amx_bf16": True, "avx512_bf16": True, "avx512_f": True, "avx2": True}
AVX512_BF16 = {"amx_bf16": False, "avx512_bf16": True, "avx512_f": True, "avx2": True}


@pytest.fixture(autouse=True)
def _onednn_uncapped(monkeypatch):
    """The decisions below assume a oneDNN free to use every instruction (the machine's environment may cap it)."""
    for variable in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(
    ("features", "expected"), [(AVX2_ONLY, "fp32"), (AMX, "bf16"), (AVX512_BF16, "bf16")], ids=["avx2", "amx", "avx512"]
)
def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively(features, expected):
    choice = resolve_precision("auto", CPU, features=features)
    assert choice.precision == expected and choice.reason.startswith("auto: ")
    assert choice.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_auto_reads_the_real_probe_when_not_told(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: AVX2_ONLY)
    assert resolve_precision("auto", CPU).precision == "fp32"
    monkeypatch.setattr(precision_module, "cpu_features", lambda: AMX)
    assert resolve_precision("auto", CPU).precision == "bf16"


def test_explicit_precisions_are_kept_and_bad_ones_rejected_by_name():
    assert resolve_precision("bf16", CPU, features=AVX2_ONLY).precision == "bf16"  # asked for: obeyed
    assert resolve_precision("fp32", CPU, features=AMX).reason == "requested"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, auto, got 'half'"):
        resolve_precision("half", CPU)
    assert PRECISIONS == ("fp32", "bf16", "fp16", "auto")


def test_cpu_features_fall_back_to_proc_cpuinfo_without_torchs_probe(monkeypatch):
    cpu_features.cache_clear()
    monkeypatch.setattr(torch._C, "_cpu", None)
    try:
        found = cpu_features()
    finally:
        cpu_features.cache_clear()
    assert set(found) == {"amx_bf16", "avx512_bf16", "avx512_f", "avx2"}
    flags = Path("/proc/cpuinfo").read_text().split()
    assert found["avx2"] == ("avx2" in flags) and found["amx_bf16"] == ("amx_bf16" in flags)


@pytest.mark.parametrize(
    ("name", "capability", "bf16", "expected"),
    [("NVIDIA H100", (9, 0), True, "bf16"), ("Tesla V100", (7, 0), False, "fp16"), ("Tesla T4", (7, 5), False, "fp16"),
     ("Tesla P100", (6, 0), False, "fp32"), ("GeForce GTX 1080", (6, 1), False, "fp32")],
    ids=["hopper", "volta", "turing", "pascal-p100", "pascal-gtx"],
)  # fmt: skip
def test_auto_on_a_gpu_picks_bf16_then_fp16_tensor_cores_then_fp32(monkeypatch, name, capability, bf16, expected):
    """The GPU is mocked: what `auto` reads is the bf16 probe, the compute capability and the name (for the reason)."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    choice = resolve_precision("auto", torch.device("cuda"))
    assert choice.precision == expected and choice.reason.startswith(f"auto: {name} ")
    assert f"{capability[0]}.{capability[1]}" in choice.reason or expected == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")).precision == "fp32"  # asked for: obeyed


@pytest.mark.parametrize(
    ("variable", "value", "features", "expected", "why"),
    [
        ("ONEDNN_MAX_CPU_ISA", "AVX2", AMX, "fp32", "ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN from this CPU's bf16"),
        ("ONEDNN_MAX_CPU_ISA", "avx512_core", AVX512_BF16, "fp32", "ONEDNN_MAX_CPU_ISA=avx512_core keeps oneDNN"),
        ("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI", AMX, "fp32", "DNNL_MAX_CPU_ISA=AVX512_CORE_VNNI keeps oneDNN"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", AMX, "bf16", "AVX512-BF16 (and AMX-BF16, which ONEDNN_MAX_CPU"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX", AMX, "bf16", "this CPU has AMX-BF16"),
        ("ONEDNN_MAX_CPU_ISA", "DEFAULT", AVX512_BF16, "bf16", "this CPU has AVX512-BF16"),
        ("ONEDNN_MAX_CPU_ISA", "AVX2", AVX2_ONLY, "fp32", "neither AMX-BF16 nor AVX512-BF16"),
    ],
)
def test_auto_keeps_fp32_where_onednn_is_capped_below_the_cpus_bf16(monkeypatch, variable, value, features, expected,
                                                                    why):  # fmt: skip
    """oneDNN runs the convolutions: held below AVX512-BF16 by its ISA cap it emulates bf16, 2.6-7x slower than
    fp32 on an AVX512-BF16 CPU (docs/benchmarks.md); auto used to pick bf16 there from the CPU's flags alone."""
    monkeypatch.setenv(variable, value)
    choice = resolve_precision("auto", CPU, features=features)
    assert choice.precision == expected and why in choice.reason


def test_auto_keeps_fp32_where_onednn_is_off(monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    choice = resolve_precision("auto", CPU, features=AMX)
    assert choice.precision == "fp32" and "oneDNN is off" in choice.reason
    monkeypatch.undo()
    assert torch.backends.mkldnn.enabled and resolve_precision("auto", CPU, features=AMX).precision == "bf16"


def test_native_bf16_explains_itself():
    assert native_bf16(CPU, AMX) == (True, "this CPU has AMX-BF16")
    native, why = native_bf16(CPU, AVX2_ONLY)
    assert not native and "emulated" in why


def test_autocast_runs_convolutions_in_the_chosen_dtype_and_fp32_is_a_no_op():
    x, w = torch.rand(1, 3, 8, 8), torch.rand(4, 3, 3, 3)
    with autocast("bf16", CPU):
        assert torch.nn.functional.conv2d(x, w).dtype == torch.bfloat16
    with autocast(resolve_precision("auto", CPU, features=AVX2_ONLY), CPU):
        assert torch.nn.functional.conv2d(x, w).dtype == torch.float32


def test_fp32_on_cuda_means_ieee_float32_convolutions_not_tf32():
    """cuDNN's default runs float32 convolutions in TF32: GPU "fp32" scores and training drifted from the CPU's.
    The flag is only set and restored, so the check needs no GPU."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with autocast(PrecisionChoice("fp32", "requested"), torch.device("cuda")):
        assert conv.fp32_precision == "ieee"
    assert conv.fp32_precision == before
    with autocast("fp32", CPU):  # nothing to change on the CPU
        assert conv.fp32_precision == before


def test_derain_defaults_to_auto_and_picks_fp32_without_native_bf16(monkeypatch):
    """The fast path by default, never a slow one by accident (features mocked)."""
    import numpy as np

    import sian
    from sian.inference import Pipeline

    model = sian.create_model("sian", channels=4, stages=2).eval()
    monkeypatch.setattr(precision_module, "cpu_features", lambda: AVX2_ONLY)
    assert Pipeline(model).precision.precision == "fp32"
    monkeypatch.setattr(precision_module, "cpu_features", lambda: AMX)
    pipeline = Pipeline(model)
    assert pipeline.precision.precision == "bf16" and "AMX" in pipeline.describe()
    calls = []
    monkeypatch.setattr("sian.inference.autocast", lambda choice, device: calls.append(choice.precision)
                        or torch.autocast(device.type, dtype=torch.bfloat16))  # fmt: skip
    sian.derain(np.zeros((16, 20, 3), np.uint8), model=model)  # the Python API's default is auto too
    assert calls == ["bf16"]
    # Scores stay exact: validation and eval ask for fp32 whatever the CPU.
    assert Pipeline(model, precision="fp32").precision.precision == "fp32"


def test_fp16_is_refused_on_the_cpu():
    """Pipeline refuses fp16 without a GPU: a CPU would only emulate it, slowly."""
    from sian.inference import Pipeline
    from sian.models import create_model

    model = create_model("sian", channels=4, stages=2).eval()
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Pipeline(model, precision="fp16")
