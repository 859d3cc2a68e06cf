"""See what the network does on one image: every stage, the rain layer, the attention masks, the DoG pyramid.

:func:`explain` runs a model once with forward hooks and returns the panels; :func:`render_figure`
draws them as one PNG (matplotlib) and :func:`render_html` writes a self-contained page (images inlined
as base64, no server). The attention masks and DoG maps shown are those of the first stage, where the
network sees the rainy image most directly.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ._atomic import atomic_path
from .inference import Pipeline
from .io import read_image, to_tensor
from .metrics import quantize, score_y

__all__ = ["ExplainedFile", "Explanation", "Panel", "explain", "explain_file", "rain_layer", "render_figure",
           "render_html", "shrink_to"]  # fmt: skip


@dataclass
class Panel:
    title: str
    caption: str
    image: np.ndarray  # (H, W, 3) uint8 picture, or (H, W) float map shown with ``cmap``
    cmap: str | None = None


@dataclass
class Explanation:
    panels: list[Panel]
    stage_scores: list[tuple[float, float]] = field(default_factory=list)  # (PSNR, SSIM) per stage vs --gt
    input_score: tuple[float, float] | None = None


def _normalise(values: np.ndarray) -> np.ndarray:
    """Scale a map for display so that its 99.5th percentile is white (a few outliers saturate)."""
    return np.clip(values / max(float(np.percentile(values, 99.5)), 1e-6), 0.0, 1.0)


def rain_layer(rainy: torch.Tensor, derained: torch.Tensor) -> np.ndarray:
    """The estimated rain layer ``R = rainy - derained`` (Eq. 6) of the first image, for display.

    Args:
        rainy: ``(B, 3, H, W)`` in [0, 1]; derained: the same shape, any float dtype or device.

    Returns:
        ``(H, W)`` float map in [0, 1]: negatives dropped, mean over colour, 99.5th percentile white.

    Examples:
        >>> rainy = torch.zeros(1, 3, 4, 4); rainy[..., 1, 1] = 0.5
        >>> float(rain_layer(rainy, torch.zeros(1, 3, 4, 4)).max())
        1.0
    """
    rain = (rainy.float().cpu() - derained.float().cpu())[0].clamp(min=0).mean(0).numpy()
    return _normalise(rain)


def shrink_to(rainy: np.ndarray, clean: np.ndarray | None, max_side: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Downscale (Lanczos) an image and its reference so the longest side is at most ``max_side``:
    an explanation shows every stage and map of the image, which at full size would be tens of panels of
    megapixels. Returns the images and whether they were scaled.

    Examples:
        >>> small, _, scaled = shrink_to(np.zeros((300, 200, 3), np.uint8), None, 150)
        >>> small.shape, scaled
        ((150, 100, 3), True)
    """
    scale = max_side / max(rainy.shape[:2])
    if scale >= 1:
        return rainy, clean, False
    size = (max(1, round(rainy.shape[1] * scale)), max(1, round(rainy.shape[0] * scale)))

    def resize(image: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))

    return resize(rainy), None if clean is None else resize(clean), True


@torch.inference_mode()
def explain(model: nn.Module, rainy: np.ndarray, clean: np.ndarray | None = None) -> Explanation:
    """Panels for ``rainy`` ``(H, W, 3)`` uint8 (and per-stage scores when ``clean`` is given).

    Examples:
        >>> import sian
        >>> net = sian.create_model("sian", channels=4, stages=2).eval()
        >>> e = explain(net, np.zeros((32, 40, 3), np.uint8))
        >>> [p.title for p in e.panels][:4], len(e.panels)  # input, 2 stages, rain, 3 masks, 3 x 5 DoG maps
        (['rainy input', 'stage 1', 'stage 2', 'rain layer'], 22)
    """
    captured: dict[str, list] = {"dogs": [], "masks": []}
    hooks = []
    scale_space = getattr(model, "scale_space", None)
    if scale_space is not None:
        hooks.append(scale_space.register_forward_hook(
            lambda _m, _i, out: captured["dogs"].append([d.detach().clone() for d in out])))  # fmt: skip
    for octave, level in enumerate(getattr(model, "levels", [])):
        if getattr(level, "attention_conv", None) is not None:
            hooks.append(level.attention_conv.register_forward_hook(
                lambda _m, _i, out, o=octave: captured["masks"].append((o, torch.sigmoid(out)))))  # fmt: skip
    pipeline = Pipeline(model, precision="fp32")  # per-stage scores as `sian eval` computes them
    try:
        outputs = pipeline.stages(to_tensor(rainy))
    finally:
        for hook in hooks:
            hook.remove()
    stages = [pipeline.quantize(out) for out in outputs]
    panels = [Panel("rainy input", "The input photo.", rainy)]
    if clean is not None:
        panels.append(Panel("clean reference", "The reference given with --gt.", clean))
    scores = []
    for index, stage in enumerate(stages, 1):
        caption = f"Output of stage {index} of {len(stages)} (the stages share weights and refine in turn)."
        if clean is not None and clean.shape == stage.shape:
            score = score_y(stage, clean)
            scores.append(score)
            caption += f" Y-PSNR {score[0]:.2f} dB, SSIM {score[1]:.4f}."
        panels.append(Panel(f"stage {index}", caption, stage))
    panels.append(Panel("rain layer", "R = input - final output (Eq. 6), brightness scaled to its 99.5th percentile.",
                        rain_layer(to_tensor(rainy), outputs[-1]), "gray"))  # fmt: skip
    octaves = len(getattr(model, "levels", []))
    for octave, mask in captured["masks"][:octaves]:
        values = mask[0].mean(0).float().cpu().numpy()
        low, high = float(values.min()), float(values.max())
        panels.append(Panel(f"attention, scale 1/{2**octave}",
                            f"Importance mask M of Eq. 3 at 1/{2**octave} resolution, first stage, mean over "
                            f"channels, stretched from {low:.3f} (dark) to {high:.3f} (bright); features are "
                            "multiplied by 1 + M.", (values - low) / max(high - low, 1e-12), "viridis"))  # fmt: skip
    if captured["dogs"]:
        channels = int(model.config["channels"])
        for octave, stack in enumerate(captured["dogs"][0]):
            for index in range(stack.shape[1] // channels):
                response = stack[0, index * channels : (index + 1) * channels].abs().mean(0).float().cpu().numpy()
                caption = (f"Difference of Gaussians {index + 2} - {index + 1} of octave {octave} "
                           f"(1/{2**octave} resolution) of the first stage's features: mean |response|, "
                           "what the attention sees at that scale.")  # fmt: skip
                panels.append(Panel(f"DoG octave {octave}, map {index + 1}", caption, _normalise(response), "magma"))
    input_score = None
    if clean is not None and clean.shape == rainy.shape:
        input_score = score_y(rainy, clean)
    return Explanation(panels, scores, input_score)


def _panel_rgb(panel: Panel) -> np.ndarray:
    if panel.cmap is None:
        return panel.image
    import matplotlib

    colours = matplotlib.colormaps[panel.cmap](np.clip(panel.image, 0.0, 1.0))[..., :3]
    return quantize(colours)


def render_figure(explanation: Explanation, path: str | os.PathLike, columns: int = 6) -> Path:
    """All panels in one PNG grid, titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = explanation.panels
    rows = -(-len(panels) // columns)
    height, width = panels[0].image.shape[:2]
    scale = 2.6 / max(height, width)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * width * scale + 0.4, rows * (height * scale + 0.45)))
    for axis, panel in zip(np.ravel(axes), panels + [None] * (rows * columns - len(panels)), strict=True):
        axis.axis("off")
        if panel is not None:
            axis.imshow(_panel_rgb(panel), interpolation="nearest")
            axis.set_title(panel.title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _data_uri(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(explanation: Explanation, path: str | os.PathLike, title: str = "sian explain") -> Path:
    """A self-contained HTML page: every panel with its caption, and the per-stage scores when known."""
    figures = "\n".join(
        f'<figure><img src="{_data_uri(_panel_rgb(p))}" alt="{html.escape(p.title)}">'
        f"<figcaption><b>{html.escape(p.title)}</b>: {html.escape(p.caption)}</figcaption></figure>"
        for p in explanation.panels
    )
    table = ""
    if explanation.stage_scores:
        rows = "".join(f"<tr><td>stage {i}</td><td>{p:.2f}</td><td>{s:.4f}</td></tr>"
                       for i, (p, s) in enumerate(explanation.stage_scores, 1))  # fmt: skip
        if explanation.input_score:
            psnr, ssim = explanation.input_score
            rows = f"<tr><td>input</td><td>{psnr:.2f}</td><td>{ssim:.4f}</td></tr>" + rows
        table = f"<table><tr><th></th><th>Y-PSNR (dB)</th><th>Y-SSIM</th></tr>{rows}</table>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; }} img {{ width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.8rem; }} table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: right; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{table}
<main>
{figures}
</main></body></html>
"""
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


@dataclass
class ExplainedFile:
    """What :func:`explain_file` wrote: the figure, the page, the explanation, and the size it was made at when
    the image was downscaled first (``None`` when not)."""

    figure: Path
    page: Path
    explanation: Explanation
    scaled_to: tuple[int, int] | None


def explain_file(
    model: nn.Module,
    image: str | os.PathLike,
    output: str | os.PathLike,
    gt: str | os.PathLike | None = None,
    max_side: int = 1024,
    overwrite: bool = False,
    title: str | None = None,
) -> ExplainedFile:
    """:func:`explain` a photo file into ``OUTPUT/NAME_explain.png`` and ``OUTPUT/NAME_explain.html``
    (``sian explain``), downscaled first to ``max_side`` (:func:`shrink_to`); ``gt`` adds per-stage scores.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is off.
        ValueError: ``gt`` is not the image's size.
        sian.io.ImageReadError: a file cannot be read.
    """
    image = Path(image)
    figure, page = (Path(output) / f"{image.stem}_explain{suffix}" for suffix in (".png", ".html"))
    existing = [path for path in (figure, page) if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists")
    rainy = read_image(image)
    clean = read_image(gt) if gt is not None else None
    if clean is not None and clean.shape != rainy.shape:
        raise ValueError(f"--gt is {clean.shape[1]}x{clean.shape[0]} but the image is "
                         f"{rainy.shape[1]}x{rainy.shape[0]}")  # fmt: skip
    rainy, clean, scaled = shrink_to(rainy, clean, max_side)
    result = explain(model, rainy, clean)
    render_figure(result, figure)
    render_html(result, page, title=title or f"sian explain: {image.name}")
    return ExplainedFile(figure, page, result, (rainy.shape[1], rainy.shape[0]) if scaled else None)
