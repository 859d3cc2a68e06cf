"""ONNX export and the onnxruntime backend."""

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from sian.cli import app
from sian.export import OnnxModel, export_onnx
from sian.inference import derain_tensor
from sian.models import create_model
from sian.weights import save_weights

pytestmark = pytest.mark.slow  # ONNX exports take tens of seconds each


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = create_model("sian", channels=4, stages=2).eval()
    for p in model.parameters():  # non-trivial weights so that every branch matters
        torch.nn.init.normal_(p, std=0.2)
    weights = save_weights(folder / "tiny.safetensors", model, "sian", model.config)
    return model, weights, export_onnx(weights, folder / "tiny.onnx")


@pytest.mark.parametrize("size", [(1, 37, 53), (2, 61, 29), (1, 70, 90)])  # 70: only the 1/2 fusion pads
def test_onnx_graph_agrees_with_pytorch_on_odd_sizes(tiny, size):
    model, _, onnx_path = tiny
    batch, height, width = size
    x = torch.rand(batch, 3, height, width)
    with torch.inference_mode():
        reference = model(x, return_all=False)
    out = OnnxModel(onnx_path)(x)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-4)


def test_onnx_metadata_and_the_tiling_path(tiny):
    _, weights, onnx_path = tiny
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["arch"] == "sian" and meta["sian_model"] == str(weights) and meta["min_size"] == "4"
    assert '"stages": 2' in meta["config"] and "[0, 1]" in meta["input_range"]
    x = torch.rand(1, 3, 70, 90)
    model = OnnxModel(onnx_path)
    whole = derain_tensor(model, x, memory_budget=None)
    tiled = derain_tensor(model, x, tile=48, overlap=16)
    assert tiled.shape == whole.shape and (tiled - whole).abs().mean() < 0.05


def test_cli_export_and_derain_with_the_onnx_backend(tiny, tmp_path):
    from PIL import Image

    _, weights, _ = tiny
    runner = CliRunner()
    onnx_file = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", "--model", str(weights), "-o", str(onnx_file)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["export", "--model", str(weights), "-o", str(onnx_file)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (33, 41, 3), np.uint8)).save(tmp_path / "a.png")
    outputs = {}
    # Both in fp32: derain's default (auto) is bf16 on a CPU with AVX512-BF16 or AMX, 5 levels off the ONNX
    # graph's float32 here (this test failed on such a CPU until it said fp32).
    for backend, model in (("onnx", onnx_file), ("torch", weights)):
        out = tmp_path / backend
        result = runner.invoke(app, ["derain", str(tmp_path / "a.png"), "-o", str(out), "--model", str(model),
                                     "--backend", backend, "--precision", "fp32"])  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[backend] = np.asarray(Image.open(out / "a.png")).astype(int)
    assert np.abs(outputs["onnx"] - outputs["torch"]).max() <= 1  # 1e-4 before rounding to 8 bits
    wrong = runner.invoke(app, ["derain", str(tmp_path / "a.png"), "-o", str(tmp_path / "x"), "--model",
                                str(weights), "--backend", "onnx"])  # fmt: skip
    assert wrong.exit_code == 2 and "FILE.onnx" in wrong.output


def test_self_ensemble_composes_with_onnx_tiling_and_precision(tiny):
    """`--tta` is a Pipeline setting, so it must work the same whatever runs the passes."""
    from sian.inference import Pipeline

    model, _, onnx_path = tiny
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    reference = Pipeline(model, precision="fp32", tta="flip4").tensor(x)
    assert not torch.allclose(reference, Pipeline(model, precision="fp32").tensor(x), atol=1e-3)
    # ONNX: the exported graph under the same ensemble agrees to the graph's own tolerance.
    on_onnx = Pipeline(OnnxModel(onnx_path), tta="flip4").tensor(x)
    torch.testing.assert_close(on_onnx, reference, rtol=0, atol=1e-4)
    # Tiling: every tile is ensembled, then tiles are cross-faded, as for a single pass.
    tiled = Pipeline(model, precision="fp32", tta="flip4", tile=48, overlap=16).tensor(x)
    tiled_plain = Pipeline(model, precision="fp32", tile=48, overlap=16).tensor(x)
    assert tiled.shape == reference.shape
    assert (tiled - reference).abs().mean() < 0.5 * (tiled_plain - reference).abs().mean()
    # bf16 autocast: the ensemble of bf16 passes, close to the fp32 ensemble, returned in float32.
    reduced = Pipeline(model, precision="bf16", tta="flip4").tensor(x)
    assert reduced.dtype == torch.float32
    torch.testing.assert_close(reduced, reference, rtol=0, atol=0.05)


def test_export_warns_of_no_training_mode(tmp_path):
    """`sian export` printed torch.export's "Exporting a model while it is in training mode" warning: the model was
    in eval mode, but the wrapper that picks its final stage was not."""
    import warnings

    model = create_model("sian", channels=4, stages=2).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model, tmp_path / "m.onnx")
    assert not [w for w in caught if "training mode" in str(w.message)]
