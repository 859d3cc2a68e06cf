"""ONNX export (torch's dynamo exporter) and an onnxruntime backend that plugs into :func:`derain_tensor`.

The exported graph takes ``rainy`` ``(B, 3, H, W)`` float32 RGB in [0, 1] with dynamic batch, height and
width (each side at least the model's ``min_size``) and returns the final stage ``derained`` (not
clipped). Metadata: ``sian_model`` (the weights' name or file), ``arch``, ``config`` (JSON),
``input_range``, ``min_size``, ``sian_version``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ._atomic import atomic_path
from .hub import load_model, resolve_weights
from .weights import read_weights_file

__all__ = ["OnnxModel", "export_onnx"]


class _FinalStage(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rainy: Tensor) -> Tensor:
        return self.model(rainy, return_all=False)


def export_onnx(model: str | os.PathLike | nn.Module, output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Export a model (weights name, weight file or module) to an ONNX file with dynamic sizes."""
    from torch.export import Dim

    from . import __version__

    if isinstance(model, nn.Module):
        net, name, arch, config = model, type(model).__name__, type(model).__name__.lower(), model.config
    else:
        path = resolve_weights(model)
        arch, config, _, _ = read_weights_file(path)
        net, name = load_model(model), str(model)
    net = net.to("cpu", memory_format=torch.contiguous_format).eval()
    min_size = int(getattr(net, "min_size", 1))
    example = torch.rand(1, 3, max(min_size, 37), max(min_size, 45))
    side = {"min": min_size, "max": 16384}
    dynamic = ({0: Dim("batch", min=1, max=256), 2: Dim("height", **side), 3: Dim("width", **side)},)
    program = torch.onnx.export(_FinalStage(net).eval(), (example,), dynamo=True, dynamic_shapes=dynamic,
                                input_names=["rainy"], output_names=["derained"], verbose=False)  # fmt: skip
    proto = program.model_proto
    metadata = {"sian_model": name, "arch": arch, "config": json.dumps(dict(config), sort_keys=True),
                "input_range": "float32 RGB (B, 3, H, W) in [0, 1]", "min_size": str(min_size),
                "sian_version": __version__}  # fmt: skip
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    output = Path(output)
    with atomic_path(output, overwrite=overwrite) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return output


class OnnxModel(nn.Module):
    """An exported model run by onnxruntime, usable wherever a PyTorch model is (``derain_tensor``, tiling).

    Examples:
        >>> import sian, tempfile
        >>> from pathlib import Path
        >>> path = export_onnx(sian.create_model("sian", channels=4, stages=2), Path(tempfile.mkdtemp()) / "m.onnx")
        >>> OnnxModel(path)(torch.rand(1, 3, 9, 11)).shape
        torch.Size([1, 3, 9, 11])
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None):
        super().__init__()
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.min_size = int(self.metadata.get("min_size", 1))
        self.config = json.loads(self.metadata.get("config", "{}"))
        self.device = torch.device("cpu")

    def forward(self, rainy: Tensor, return_all: bool | None = False) -> Tensor:
        if return_all:
            raise ValueError("an exported ONNX model returns the final stage only")
        array = np.ascontiguousarray(rainy.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(["derained"], {"rainy": array})[0])
