"""Image files in and out: reading to RGB arrays, atomic writing that never clobbers by accident."""

from __future__ import annotations

import contextlib
import glob
import io as _stdio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ._atomic import atomic_path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "QUANTIZE_MODES",
    "VIDEO_EXTENSIONS",
    "ImageReadError",
    "ImageTooLargeError",
    "Picture",
    "Quantize",
    "encode_picture",
    "expand_inputs",
    "from_tensor",
    "is_video",
    "list_images",
    "picture_from_pil",
    "quantize",
    "read_image",
    "read_picture",
    "to_picture",
    "to_tensor",
    "write_image",
    "write_picture",
]

Quantize = Literal["round", "floor"]
QUANTIZE_MODES: tuple[str, ...] = ("round", "floor")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")  # derained by sian.video
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Refuse images above this many pixels unless the caller raises the limit: a small compressed file can
# decode to gigabytes (a "decompression bomb"). 100 MP covers every current phone and most cameras.
DEFAULT_MAX_PIXELS = 100_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BOMB_LOCK = threading.Lock()
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
_SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}


class ImageReadError(ValueError):
    """A file that is not a readable image."""


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than the allowed maximum (a possible decompression bomb)."""


@dataclass
class Picture:
    """An image as read from a file, with what is needed to write a result back in the same form.

    ``rgb`` is ``(H, W, 3)`` ``uint8`` or ``uint16`` (grayscale sources are replicated to three
    channels), upright (EXIF orientation applied). ``alpha`` is ``(H, W)`` of the same dtype or ``None``.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    gray: bool = False
    source_mode: str = "RGB"
    icc_profile: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8

    def to_tensor(self) -> Tensor:
        """``(1, 3, H, W)`` float32 in [0, 1]."""
        return to_tensor(self.rgb.astype(np.float32) / (65535.0 if self.bit_depth == 16 else 255.0))


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Switch off Pillow's global bomb check while we apply our own, caller-set limit."""
    with _BOMB_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an ``(H, W, ...)`` array, as ``ImageOps.exif_transpose`` does."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
           8: lambda a: np.rot90(a, 1)}  # fmt: skip
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def _png_bit_depth(header: bytes) -> int:
    return header[24] if header[:8] == _PNG_SIGNATURE and header[12:16] == b"IHDR" else 8


def _read_png16(source: Path | bytes) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """16-bit PNGs through pypng: Pillow reads 16-bit colour PNGs as 8-bit, silently dropping precision."""
    import png  # pypng

    reader = png.Reader(bytes=source) if isinstance(source, bytes) else png.Reader(filename=str(source))
    width, height, rows, info = reader.asDirect()
    planes = info["planes"]
    array = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, planes)
    gray = info["greyscale"]
    colour = np.repeat(array[..., :1], 3, axis=2) if gray else array[..., :3]
    alpha = array[..., -1] if info["alpha"] else None
    return colour, alpha, gray


def _read_tiff16(source: Path | bytes, name: str) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """16-bit TIFFs through tifffile: Pillow cannot hold 16-bit RGB."""
    import tifffile

    array = tifffile.imread(_stdio.BytesIO(source) if isinstance(source, bytes) else source)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or array.dtype != np.uint16:
        raise ImageReadError(f"{name}: unsupported 16-bit TIFF layout {array.shape} {array.dtype}")
    gray = array.shape[2] in (1, 2)
    colour = np.repeat(array[..., :1], 3, axis=2) if gray else array[..., :3]
    alpha = array[..., -1] if array.shape[2] in (2, 4) else None
    return colour, alpha, gray


def picture_from_pil(image: Image.Image) -> Picture:
    """A :class:`Picture` of an already opened (or in-memory) PIL image, in any mode, upright.

    Examples:
        >>> picture = picture_from_pil(Image.new("LA", (4, 3), (90, 200)))
        >>> picture.rgb.shape, picture.gray, int(picture.alpha[0, 0])
        ((3, 4, 3), True, 200)
    """
    mode, icc = image.mode, image.info.get("icc_profile")
    image = ImageOps.exif_transpose(image)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        gray16 = np.asarray(image).astype(np.uint16)
        return Picture(np.repeat(gray16[..., None], 3, axis=2), None, True, mode, icc)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    gray = mode in ("1", "L", "LA", "La", "I", "F")
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    alpha = rgba[..., 3].copy() if has_alpha else None
    return Picture(np.ascontiguousarray(rgba[..., :3]), alpha, gray, mode, icc)


def read_picture(
    source: str | os.PathLike | bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None
) -> Picture:
    """Read an image file (a path, or its bytes) as a :class:`Picture`, or raise a specific :class:`ImageReadError`.

    Handles grayscale, palette, RGBA/LA (alpha kept), CMYK and YCbCr (converted to RGB), 16-bit PNG and
    TIFF (kept 16-bit), and EXIF orientation. Empty, truncated, damaged and non-image files raise
    :class:`ImageReadError` naming the problem (as ``name``, default the path or ``"upload"``); images
    above ``max_pixels`` raise :class:`ImageTooLargeError` before they are decoded (``None``: no limit).
    """
    if isinstance(source, bytes):
        name = name or "upload"
        raw: Path | bytes = source
        if not source:
            raise ImageReadError(f"{name}: empty file (0 bytes)")
        header, opened = source[:26], _stdio.BytesIO(source)
    else:
        path = Path(source)
        name = name or str(path)
        raw = path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise ImageReadError(f"{name}: empty file (0 bytes)")
        with open(path, "rb") as f:
            header = f.read(26)
        opened = path
    try:
        with _own_pixel_limit(), Image.open(opened) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLargeError(
                    f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
                    "(a guard against decompression bombs); raise it with --max-pixels if you trust the file"
                )
            orientation = image.getexif().get(0x0112, 1)
            icc = image.info.get("icc_profile")
            mode = image.mode
            sixteen = None
            if image.format == "PNG" and _png_bit_depth(header) == 16:
                sixteen = _read_png16(raw)
            elif image.format == "TIFF" and image.tag_v2.get(258, (8,))[0] == 16:
                sixteen = _read_tiff16(raw, name)
            if sixteen is not None:
                colour, alpha, gray = sixteen
                return Picture(_orient(colour, orientation), None if alpha is None else _orient(alpha, orientation),
                               gray, f"{mode};16", icc)  # fmt: skip
            image.load()
            return picture_from_pil(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            f"{name}: not an image format Pillow recognises (wrong extension or damaged header)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise ImageReadError(f"{name}: damaged or truncated image ({exc.__class__.__name__}: {exc})") from exc


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``(H, W, 3)``, upright (EXIF orientation applied).

    The benchmarks' 8-bit view of :func:`read_picture`: alpha is dropped, 16-bit is rounded to 8 bits.
    """
    picture = read_picture(path, max_pixels)
    if picture.bit_depth == 16:
        return _sixteen_to_eight(picture.rgb)
    return picture.rgb


def quantize(image: Tensor | np.ndarray, mode: Quantize = "round", bits: int = 8) -> np.ndarray:
    """Clip an image in [0, 1] and quantise it to ``bits`` (8 or 16): the package's one conversion to integers.

    Every integer image ``sian`` produces goes through here: the files ``sian derain`` writes, what
    ``sian.derain()`` returns, what ``sian eval`` and validation score, the server's responses.

    Args:
        image: float values in [0, 1] of any shape (arrays), or a ``(3, H, W)`` / ``(1, 3, H, W)`` tensor,
            which becomes ``(H, W, 3)``.
        mode: ``"round"``, half up (``floor(x * top + 0.5)``, MATLAB ``im2uint8`` and the SIAN release), or
            ``"floor"``, truncation (the PReNet release). The scaling happens in the values' own precision
            (float32 for model outputs), as the releases do.
        bits: 8 (``uint8``, top 255) or 16 (``uint16``, top 65535).

    Examples:
        >>> half = np.full((1, 1, 3), 0.5)
        >>> quantize(half).ravel().tolist(), quantize(half, "floor").ravel().tolist()
        ([128, 128, 128], [127, 127, 127])
        >>> quantize(np.array([1 / 510, 1.0]), bits=16).tolist()  # 128.5 rounds up, not to even
        [129, 65535]
    """
    if isinstance(image, Tensor):
        image = from_tensor(image)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    if image.dtype.kind != "f":
        raise TypeError(f"quantize takes float values in [0, 1], got {image.dtype}")
    scale = image.dtype.type(65535 if bits == 16 else 255)
    scaled = np.clip(image, 0, 1) * scale
    if mode == "round":
        scaled = np.floor(scaled + image.dtype.type(0.5))
    elif mode == "floor":
        scaled = np.floor(scaled)
    else:
        raise ValueError(f"unknown quantize mode {mode!r}; expected one of {QUANTIZE_MODES}")
    return scaled.astype(np.uint16 if bits == 16 else np.uint8)


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    return quantize(values / 65535.0)


def to_picture(
    rgb: np.ndarray, like: Picture | None = None, quantization: Quantize = "round", bits: int | None = None
) -> Picture:
    """A float ``(H, W, 3)`` result in [0, 1] as an integer :class:`Picture` in the form of the source ``like``:
    its bit depth (or ``bits``), grayscale (BT.601 luma of the result) and alpha channel.

    Examples:
        >>> source = Picture(np.zeros((2, 2, 3), np.uint16), alpha=np.full((2, 2), 7, np.uint16))
        >>> out = to_picture(np.full((2, 2, 3), 0.5, np.float32), source)
        >>> out.rgb.dtype, int(out.rgb[0, 0, 0]), int(out.alpha[0, 0])
        (dtype('uint16'), 32768, 7)
    """
    like = like or Picture(np.zeros((1, 1, 3), np.uint8))
    bits = bits or like.bit_depth
    if like.gray:
        rgb = np.repeat((rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=2)
    channels = quantize(rgb, quantization, bits)
    alpha = like.alpha
    if alpha is not None:
        if alpha.shape != channels.shape[:2]:
            raise ValueError(f"alpha {alpha.shape} does not match the image {channels.shape[:2]}")
        if bits == 8 and alpha.dtype == np.uint16:
            alpha = _sixteen_to_eight(alpha)
        elif bits == 16 and alpha.dtype == np.uint8:
            alpha = alpha.astype(np.uint16) * 257
    return Picture(channels, alpha, like.gray, like.source_mode, like.icc_profile)


def _format_of(path: str | os.PathLike) -> str:
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image extension {Path(path).suffix!r}")
    return fmt


def encode_picture(picture: Picture, fmt: str = "PNG") -> bytes:
    """The file bytes of an integer :class:`Picture` in Pillow format ``fmt`` (PNG, JPEG at quality 95, ...);
    16-bit PNG and TIFF stay 16-bit. The picture must already fit the format (see :func:`write_picture`)."""
    buffer = _stdio.BytesIO()
    channels = picture.rgb[..., :1] if picture.gray else picture.rgb
    if picture.alpha is not None:
        channels = np.concatenate([channels, picture.alpha[..., None].astype(channels.dtype)], axis=2)
    planes = channels.shape[2]
    if picture.bit_depth == 16 and fmt == "PNG":
        import png  # pypng

        writer = png.Writer(channels.shape[1], channels.shape[0], greyscale=planes in (1, 2),
                            alpha=planes in (2, 4), bitdepth=16)  # fmt: skip
        writer.write(buffer, channels.reshape(channels.shape[0], -1).tolist())
    elif picture.bit_depth == 16:
        import tifffile

        tifffile.imwrite(buffer, channels[..., 0] if planes == 1 else channels,
                         photometric="minisblack" if planes in (1, 2) else "rgb",
                         extrasamples=("unassalpha",) if planes in (2, 4) else None)  # fmt: skip
    else:
        image = Image.fromarray(channels[..., 0] if planes == 1 else channels)
        options = {"quality": 95} if fmt == "JPEG" else {}
        if picture.icc_profile and fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
            options["icc_profile"] = picture.icc_profile
        image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def write_picture(
    path: str | os.PathLike, rgb: np.ndarray, like: Picture | None = None, overwrite: bool = False,
    quantization: Quantize = "round",
) -> list[str]:  # fmt: skip
    """Write a float ``(H, W, 3)`` result in [0, 1] in the form of the source ``like``, atomically.

    The bit depth (16-bit for PNG/TIFF), grayscale and alpha of ``like`` are kept where the output
    format allows; what the format cannot hold is returned as notes (e.g. alpha dropped for JPEG).
    """
    fmt = _format_of(path)
    like = like or Picture(np.zeros((1, 1, 3), np.uint8))
    notes = []
    bits = like.bit_depth if fmt in _SIXTEEN_BIT_FORMATS else 8
    if like.bit_depth == 16 and bits == 8:
        notes.append(f"16-bit source written as 8-bit: {fmt} holds 8 bits (use --format png or tif)")
    picture = to_picture(rgb, like, quantization, bits)
    if picture.alpha is not None and fmt not in _ALPHA_FORMATS:
        notes.append(f"alpha channel dropped: {fmt} has none (use --format png)")
        picture = Picture(picture.rgb, None, picture.gray, picture.source_mode, picture.icc_profile)
    data = encode_picture(picture, fmt)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return notes


def write_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = False) -> Path:
    """Write a ``uint8`` RGB array atomically (through :func:`write_picture`: 8-bit values round-trip
    exactly, JPEG at quality 95). Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"write_image takes uint8 RGB, got {image.dtype} (write_picture writes floats)")
    write_picture(path, image.astype(np.float64) / 255.0, overwrite=overwrite)
    return Path(path)


def to_tensor(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` array (uint8, or float in [0, 1]) to a ``(1, 3, H, W)`` float32 tensor in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]


def from_tensor(image: Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` or ``(3, H, W)`` tensor to a float32 ``(H, W, 3)`` array (not clipped)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    return image.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()


def list_images(folder: str | os.PathLike, recursive: bool = False, videos: bool = False) -> list[Path]:
    """The image files in ``folder`` (by extension), sorted; with ``recursive``, in its subfolders too;
    with ``videos``, video files as well."""
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    kinds = IMAGE_EXTENSIONS + (VIDEO_EXTENSIONS if videos else ())
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in kinds)


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their images, sorted) and glob patterns to a list of files; plus what matched nothing."""
    files, unmatched = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path, videos=True)
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if not found:
            unmatched.append(item)
        files.extend(found)
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique, unmatched
