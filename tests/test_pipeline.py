"""The one inference pipeline: every entry point gives the same bytes."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import sian
from sian.cli import app
from sian.data import Pair
from sian.evaluate import evaluate
from sian.inference import Pipeline, plan_outputs
from sian.io import read_picture
from sian.metrics import score_y
from sian.models import create_model
from sian.weights import save_weights

runner = CliRunner()


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(3)
    model = create_model("sian", channels=4, stages=2)
    return save_weights(tmp_path / "tiny.safetensors", model, "sian", model.config)


def smooth_rgb(seed: int, size=(30, 36), top: int = 255) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    image = np.stack([x / size[1], y / size[0], 0.5 + 0.3 * np.sin(x / 3.0)], -1) + rng.normal(0, 0.05, (*size, 3))
    dtype = np.uint16 if top > 255 else np.uint8
    return np.clip(np.round(image * top), 0, top).astype(dtype)


def write_inputs(folder):
    folder.mkdir()
    rgb = smooth_rgb(0)
    Image.fromarray(rgb).save(folder / "rgb.png")
    rgba = np.concatenate([smooth_rgb(1), np.linspace(0, 255, 30 * 36).reshape(30, 36, 1).astype(np.uint8)], 2)
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(smooth_rgb(2)[..., 0]).save(folder / "gray.png")
    import png  # pypng: a 16-bit RGB PNG

    sixteen = smooth_rgb(3, top=65535)
    with open(folder / "deep.png", "wb") as f:
        png.Writer(36, 30, greyscale=False, bitdepth=16).write(f, sixteen.reshape(30, -1).tolist())
    return {"rgb": rgb, "rgba": rgba, "deep": sixteen}


@pytest.mark.slow
def test_cli_png_derain_and_eval_give_the_same_bytes(tmp_path, tiny_model):
    inputs = write_inputs(tmp_path / "in")
    result = runner.invoke(
        app, ["derain", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    # The Python API, PIL in and PIL out: same pixels, same mode (alpha and gray kept).
    for name in ("rgb", "rgba", "gray"):
        api = sian.derain(Image.open(tmp_path / "in" / f"{name}.png"), model=tiny_model)
        written = Image.open(out / f"{name}.png")
        assert api.mode == written.mode == {"rgb": "RGB", "rgba": "RGBA", "gray": "L"}[name]
        assert np.array_equal(np.asarray(api), np.asarray(written)), name
    # Arrays, 8-bit RGBA and 16-bit RGB: the same dtype and values as the files.
    assert np.array_equal(sian.derain(inputs["rgba"], model=tiny_model), np.asarray(Image.open(out / "rgba.png")))
    deep = sian.derain(inputs["deep"], model=tiny_model)
    assert deep.dtype == np.uint16 and np.array_equal(deep, read_picture(out / "deep.png").rgb)
    # sian eval scores exactly the image the CLI wrote, at derain's default precision (auto: bf16 on a CPU with
    # AVX512-BF16 or AMX, where eval's own fp32 default gives other bytes; this test failed there until it said so).
    clean = smooth_rgb(7)
    Image.fromarray(clean).save(tmp_path / "clean.png")
    pair = Pair("rgb", tmp_path / "in/rgb.png", tmp_path / "clean.png")
    row = evaluate(sian.load_model(tiny_model), [pair], precision="auto")[0]
    assert (row.psnr, row.ssim) == score_y(np.asarray(Image.open(out / "rgb.png")), clean)


def test_a_list_is_derained_in_order_like_one_at_a_time(tiny_model):
    pipeline = Pipeline(sian.load_model(tiny_model))
    images = [smooth_rgb(i) for i in range(3)] + [Image.fromarray(smooth_rgb(5)).convert("LA")]
    batch = pipeline(images)
    for image, got in zip(images, batch, strict=True):
        single = pipeline(image)
        assert np.array_equal(np.asarray(got), np.asarray(single))
    assert batch[3].mode == "LA"


@pytest.mark.slow
def test_tiles_align_to_the_models_own_grid(monkeypatch):
    """Tiling hard-coded align=4, off the pooling grid of a model with 4 octaves (min_size 8)."""
    import sian.inference as inference
    import sian.tiling as tiling

    origins = []
    real_starts = tiling.tile_starts

    def recording_starts(length, tile, overlap, align=1):
        starts = real_starts(length, tile, overlap, align)
        origins.extend(start for start, _ in starts)
        return starts

    monkeypatch.setattr(tiling, "tile_starts", recording_starts)
    torch.manual_seed(0)
    model = create_model("sian", channels=4, stages=1, octaves=4).eval()
    pipeline = inference.Pipeline(model, tile=48, overlap=16)
    out = pipeline.tensor(torch.rand(1, 3, 100, 90))
    assert out.shape == (1, 3, 100, 90) and pipeline.min_size == 8
    assert len(origins) > 2 and all(o % 8 == 0 for o in origins) and any(o % 8 == 0 and o % 16 for o in origins)


def test_an_onnx_style_model_refuses_reduced_precision_instead_of_running_fp32_silently():
    class Graph(torch.nn.Module):  # like OnnxModel: no parameters, a device attribute
        device = torch.device("cpu")

        def forward(self, x, return_all=False):
            return x

    with pytest.raises(ValueError, match="ONNX model runs fp32 only"):
        Pipeline(Graph(), precision="bf16")
    assert Pipeline(Graph(), precision="auto").precision.precision == "fp32"


def test_plan_outputs_never_overwrites_an_input_or_writes_one_file_twice(tmp_path):
    a, b, c = tmp_path / "x" / "a.png", tmp_path / "y" / "a.jpg", tmp_path / "b.png"
    jobs, refused = plan_outputs([a, b, c], tmp_path, fmt="png")
    assert [s for s, _ in jobs] == [a] and [s for s, _ in refused] == [b, c]
    assert "also writes a.png" in refused[0][1] and "would replace an input" in refused[1][1]


def test_one_device_rule_for_inference_and_training(monkeypatch):
    """The device was chosen in two places (inference and the trainer) with two rules."""
    from sian.inference import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        resolve_device("cuda", index=1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", index=1) == torch.device("cuda", 1)  # a torchrun process's local rank
    assert resolve_device("cuda:0", index=1) == torch.device("cuda", 0)  # a named GPU wins


class _Pointwise(torch.nn.Module):
    """A flip-equivariant stand-in: any flip ensemble of it equals it."""

    min_size = 1

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.8))

    def forward(self, x, return_all=False):
        out = x * self.scale + 0.01 * torch.arange(x.shape[-1], dtype=x.dtype)  # depends on the column
        return [out] if return_all else out


@pytest.mark.parametrize("tta", ["flip2", "flip4"])
def test_flip_ensembles_flip_back_what_they_flip(tta):
    x = torch.rand(1, 3, 9, 13)
    plain = Pipeline(_Pointwise(), precision="fp32").tensor(x)
    ensemble = Pipeline(_Pointwise(), precision="fp32", tta=tta).tensor(x)
    # The column ramp is mirrored by a horizontal flip: flipped back and averaged it becomes symmetric.
    ramp = 0.01 * torch.arange(13, dtype=x.dtype)
    assert torch.allclose(ensemble, x * 0.8 + (ramp + ramp.flip(0)) / 2, atol=1e-6)
    assert not torch.allclose(ensemble, plain)
    with pytest.raises(ValueError, match="tta must be one of flip2, flip4"):
        Pipeline(_Pointwise(), tta="rot8")


@pytest.mark.slow
def test_a_rotation_ensemble_loses_because_rain_has_a_direction():
    """The x8 ensemble of super-resolution (90-degree rotations) is wrong for rain. Our shipped
    model on the bundled example: a rotated input's streaks run sideways, and the model leaves them."""
    from sian.demo import load_example
    from sian.hub import load_model
    from sian.io import to_tensor
    from sian.metrics import psnr_y

    rainy, clean = load_example()
    rainy, clean = rainy[:192, 100:356], clean[:192, 100:356]
    pipeline = Pipeline(load_model("sian-synth-light"), precision="fp32")
    x = to_tensor(rainy)
    plain = psnr_y(pipeline.quantize(pipeline.tensor(x)), clean)
    turned = pipeline.tensor(torch.rot90(x, 1, (-2, -1)))
    quarter = psnr_y(pipeline.quantize(torch.rot90(turned, -1, (-2, -1))), clean)
    rotations = sum(torch.rot90(pipeline.tensor(torch.rot90(x, k, (-2, -1))), -k, (-2, -1)) for k in range(4)) / 4
    rotated = psnr_y(pipeline.quantize(rotations), clean)
    assert plain > psnr_y(rainy, clean) + 10  # the model works on upright rain (44.2 vs 28.1 dB)
    assert quarter < psnr_y(rainy, clean) + 1  # ...and does nothing for sideways rain (28.0 dB)
    assert rotated < plain - 5  # so averaging over rotations throws most of the gain away (33.7 dB)


def test_self_ensembles_share_passes_and_match_their_own_runs_bit_for_bit(tiny_model):
    """`sian eval --tta none,flip2,flip4` scores three modes from four passes: each output must be exactly the
    one a Pipeline with that single mode gives, or the shared run would report numbers nobody can reproduce."""
    model = sian.load_model(tiny_model)
    x = torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    shared = dict(Pipeline(model, precision="fp32").self_ensembles(x, ["flip4", None, "flip2"]))
    assert len(calls) == 4 and list(shared) == [None, "flip2", "flip4"]
    for mode, output in shared.items():
        assert torch.equal(output, Pipeline(model, precision="fp32", tta=mode).tensor(x)), mode
    assert not torch.equal(shared["flip2"], shared[None])  # a real model is not flip-equivariant
    with pytest.raises(ValueError, match="whole images"):
        next(Pipeline(model, precision="fp32", tile=16).self_ensembles(x, [None, "flip2"]))


@pytest.mark.slow
def test_eval_with_a_list_of_self_ensembles_reports_each_as_its_own_run(tmp_path, tiny_model):
    write_inputs(tmp_path / "in")
    (tmp_path / "clean").mkdir()
    for index, name in enumerate(("rgb", "gray")):
        Image.open(tmp_path / "in" / f"{name}.png").convert("RGB").save(tmp_path / "in" / f"{index}.png")
        Image.fromarray(smooth_rgb(10 + index)).save(tmp_path / "clean" / f"{index}.png")
    pairs = [Pair(str(i), tmp_path / "in" / f"{i}.png", tmp_path / "clean" / f"{i}.png") for i in range(2)]
    data = tmp_path / "pairs.txt"
    data.write_text("".join(f"{p.rainy} {p.clean}\n" for p in pairs))
    result = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data", str(data), "--layout", "list",
                                 "--tta", "none,flip2,flip4", "--csv", str(tmp_path / "scores.csv"),
                                 "--json", str(tmp_path / "scores.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    import json

    report = json.loads((tmp_path / "scores.json").read_text())
    for mode in ("none", "flip2", "flip4"):
        alone = evaluate(sian.load_model(tiny_model), pairs, tta=None if mode == "none" else mode)
        assert [(r["psnr"], r["ssim"]) for r in report["images"][mode]] == [(r.psnr, r.ssim) for r in alone]
        assert (tmp_path / f"scores-{mode}.csv").is_file()
    assert report["summaries"]["flip4"]["seconds_per_image"] > report["summaries"]["none"]["seconds_per_image"]
    bad = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data", str(data), "--layout", "list",
                              "--tta", "none,rot8"])  # fmt: skip
    assert bad.exit_code != 0 and "rot8" in bad.output


def test_describe_says_which_dog_path_runs(monkeypatch):
    from sian import scale_space

    sian_pipeline = Pipeline(create_model("sian", channels=4, stages=1).eval(), precision="fp32")
    monkeypatch.setattr(scale_space, "dog_library", lambda: None)
    assert sian_pipeline.describe().endswith("DoG pyramid: PyTorch operations")
    monkeypatch.setattr(scale_space, "dog_library", lambda: object())
    assert sian_pipeline.describe().endswith("DoG pyramid: fused kernel")
    assert "DoG" not in Pipeline(create_model("prenet", channels=4, stages=1).eval(), precision="fp32").describe()


def test_describe_says_which_convlstm_update_runs(monkeypatch):
    from sian.models import layers

    for name in ("sian", "prenet"):
        pipeline = Pipeline(create_model(name, channels=4, stages=1).eval(), precision="fp32")
        monkeypatch.setattr(layers, "convlstm_library", lambda: None)
        assert "ConvLSTM update: PyTorch operations" in pipeline.describe()
        monkeypatch.setattr(layers, "convlstm_library", lambda: object())
        assert "ConvLSTM update: compiled kernel" in pipeline.describe()
    no_lstm = Pipeline(create_model("sian_baseline", channels=4, stages=1).eval(), precision="fp32")
    assert "ConvLSTM" not in no_lstm.describe()


def test_describe_says_whether_sians_pyramid_steps_run_compiled(monkeypatch):
    from sian.models import sian_arch

    pipeline = Pipeline(create_model("sian", channels=4, stages=1).eval(), precision="bf16")
    monkeypatch.setattr(sian_arch, "pyramid_library", lambda: None)
    assert "attention and fusion inputs: PyTorch operations" in pipeline.describe()
    monkeypatch.setattr(sian_arch, "pyramid_library", lambda: object())
    assert "attention and fusion inputs: compiled kernels" in pipeline.describe()
    assert "attention" not in Pipeline(create_model("prenet", channels=4, stages=1).eval()).describe()


def test_describe_names_the_fused_dog_kernel_under_bf16_too(monkeypatch):
    """Bug: describe() named the DoG path only for fp32, though the fused kernel serves bf16 maps now."""
    from sian import scale_space

    monkeypatch.setattr(scale_space, "dog_library", lambda: object())
    bf16 = Pipeline(create_model("sian", channels=4, stages=1).eval(), precision="bf16").describe()
    assert bf16.startswith("cpu, bf16") and bf16.endswith("DoG pyramid: fused kernel")
