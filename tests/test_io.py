import os
import stat

import numpy as np
import pytest

from sian._atomic import atomic_path
from sian.io import Picture, read_image, write_image


def image(value=100, size=(9, 7)):
    return np.full((*size, 3), value, np.uint8)


def test_written_images_get_normal_permissions_not_mkstemp_private_ones(tmp_path):
    # Regression: outputs were created by mkstemp and kept its 0600 mode, unreadable to other users.
    old = os.umask(0o022)
    try:
        path = write_image(tmp_path / "out.png", image())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert np.array_equal(read_image(path), image())


def test_write_image_never_replaces_an_existing_file_without_overwrite(tmp_path):
    path = write_image(tmp_path / "out.png", image(10))
    with pytest.raises(FileExistsError, match="exists"):
        write_image(path, image(200))
    assert read_image(path)[0, 0, 0] == 10
    write_image(path, image(200), overwrite=True)
    assert read_image(path)[0, 0, 0] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary files left


def test_a_file_appearing_during_the_write_is_not_replaced(tmp_path):
    target = tmp_path / "race.txt"
    with pytest.raises(FileExistsError), atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("ours")
        target.write_text("theirs")  # another writer wins the race
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.txt"]


def test_a_failing_writer_leaves_the_previous_file_and_no_debris(tmp_path):
    target = tmp_path / "state.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_format_comes_from_the_target_suffix_not_the_temporary_name(tmp_path):
    path = write_image(tmp_path / "out.jpg", image())
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG magic


# --- reading every kind of input ----------------------------------------------------------

from PIL import Image  # noqa: E402

from sian.io import ImageReadError, ImageTooLargeError, read_picture, write_picture  # noqa: E402


def gradient(h=12, w=16):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1).astype(np.uint8)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.png", b"", "empty file"),
        ("text.jpg", b"this is not an image at all\n" * 4, "not an image format"),
        ("html.png", b"<html><body>404</body></html>", "not an image format"),
    ],
)
def test_non_images_raise_a_specific_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        read_picture(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_raise_instead_of_returning_half_an_image(tmp_path, suffix):
    path = tmp_path / f"full{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="damaged or truncated"):
        read_picture(cut)


def test_decompression_bombs_are_refused_before_decoding_with_a_raisable_limit(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(path)  # compresses to a few kB
    assert path.stat().st_size < 50_000
    with pytest.raises(ImageTooLargeError, match=r"6,000,000 pixels exceeds the limit of 1,000,000.*--max-pixels"):
        read_picture(path, max_pixels=1_000_000)
    assert read_picture(path, max_pixels=6_000_000).rgb.shape == (2000, 3000, 3)


def test_grayscale_is_replicated_and_written_back_as_grayscale(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(gradient()[..., 0]).save(path)
    picture = read_picture(path)
    assert picture.gray and picture.rgb.shape == (12, 16, 3)
    assert np.array_equal(picture.rgb[..., 0], picture.rgb[..., 2])
    out = tmp_path / "out.png"
    write_picture(out, picture.rgb / 255.0, picture)
    with Image.open(out) as written:
        assert written.mode == "L" and np.array_equal(np.asarray(written), gradient()[..., 0])


def test_rgba_alpha_is_kept_and_reattached(tmp_path):
    rgba = np.dstack([gradient(), np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)])
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    picture = read_picture(path)
    assert np.array_equal(picture.alpha, rgba[..., 3]) and np.array_equal(picture.rgb, rgba[..., :3])
    out = tmp_path / "out.png"
    assert write_picture(out, picture.rgb / 255.0, picture) == []
    with Image.open(out) as written:
        assert written.mode == "RGBA" and np.array_equal(np.asarray(written), rgba)
    notes = write_picture(tmp_path / "out.jpg", picture.rgb / 255.0, picture)
    assert any("alpha channel dropped" in n for n in notes)


def test_palette_images_with_transparency(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = 0
    image.save(path, transparency=0)
    picture = read_picture(path)
    assert picture.source_mode == "P" and picture.alpha is not None and picture.rgb.dtype == np.uint8
    assert (picture.alpha == 0).any() and (picture.alpha == 255).any()


def test_sixteen_bit_png_keeps_all_sixteen_bits_both_ways(tmp_path):
    import png

    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    path = tmp_path / "deep.png"
    png.from_array(rgb16.reshape(9, -1), "RGB;16").save(str(path))
    picture = read_picture(path)
    assert picture.bit_depth == 16 and np.array_equal(picture.rgb, rgb16)  # Pillow alone would give 8 bits
    out = tmp_path / "out.png"
    write_picture(out, picture.rgb / 65535.0, picture)
    assert np.array_equal(read_picture(out).rgb, rgb16)
    gray16 = tmp_path / "gray16.png"
    png.from_array(rgb16[..., 0], "L;16").save(str(gray16))
    assert read_picture(gray16).gray and np.array_equal(read_picture(gray16).rgb[..., 1], rgb16[..., 0])


def test_sixteen_bit_tiff_round_trip(tmp_path):
    import tifffile

    rgb16 = np.random.default_rng(2).integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, rgb16, photometric="rgb")
    picture = read_picture(path)
    assert picture.bit_depth == 16 and np.array_equal(picture.rgb, rgb16)
    write_picture(tmp_path / "out.tif", picture.rgb / 65535.0, picture)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), rgb16)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(gradient()).convert("CMYK").save(path, quality=100)
    picture = read_picture(path)
    assert picture.source_mode == "CMYK" and picture.rgb.shape == (12, 16, 3)
    assert np.abs(picture.rgb.astype(int) - gradient()).mean() < 8


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.fromarray(gradient(12, 16))
    exif = image.getexif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    image.save(path, exif=exif, quality=100)
    picture = read_picture(path)
    assert picture.rgb.shape == (16, 12, 3)
    assert np.abs(picture.rgb.astype(int) - np.rot90(gradient(12, 16), -1)).mean() < 4


def test_tiny_and_non_ascii_names(tmp_path):
    path = tmp_path / "雨の日 été.png"
    Image.fromarray(np.full((1, 1, 3), 77, np.uint8)).save(path)
    picture = read_picture(path)
    assert picture.rgb.shape == (1, 1, 3) and picture.rgb[0, 0, 0] == 77


@pytest.mark.slow
def test_a_batch_of_bad_and_unusual_inputs_end_to_end(tmp_path):
    """tests/bad_inputs.py: good images all written in their form, each bad one reported, nothing overwritten."""
    import subprocess
    import sys
    from pathlib import Path

    import sian
    from sian.weights import save_weights

    model = sian.create_model("sian", channels=4, stages=2)
    weights = save_weights(tmp_path / "tiny.safetensors", model, "sian", model.config)
    script = Path(__file__).with_name("bad_inputs.py")
    result = subprocess.run([sys.executable, str(script), "--model", str(weights), "--keep", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "all checks passed" in result.stdout, result.stdout + result.stderr
    assert "failed 5 image(s)" in result.stdout


def test_write_image_keeps_8_bit_values_exactly(tmp_path):
    values = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    path = write_image(tmp_path / "ramp.png", values)
    np.testing.assert_array_equal(read_image(path), values)
    with pytest.raises(TypeError, match="uint8"):
        write_image(tmp_path / "float.png", values / 255.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_written_files_use_the_one_half_up_quantisation(tmp_path, dtype):
    """write_picture rounded half to even in float64 while sian eval and sian.derain() rounded
    half up in the values' own precision, so a written PNG could differ by one level from the scored one."""
    from sian.io import quantize

    rng = np.random.default_rng(0)
    values = rng.random((700, 1000, 3)).astype(dtype)
    values[0, :256] = ((np.arange(256) + 0.5) / 255).astype(dtype)[:, None]  # exact halves, where rules split
    write_picture(tmp_path / "out.png", values)
    assert np.array_equal(read_image(tmp_path / "out.png"), quantize(values))
    # 16-bit files take the same rule at 16 bits.
    write_picture(tmp_path / "out16.png", values, like=Picture(np.zeros((1, 1, 3), np.uint16)))
    assert np.array_equal(read_picture(tmp_path / "out16.png").rgb, quantize(values, bits=16))


def test_quantize_rejects_integer_input_and_unknown_depths():
    from sian.io import quantize

    with pytest.raises(TypeError, match="float values"):
        quantize(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        quantize(np.zeros((2, 2, 3)), bits=12)


def test_atomic_writes_never_change_the_process_umask(tmp_path, monkeypatch):
    """Reading the umask by setting it raced with other threads (the server's thread pool)."""

    def forbidden(mask):
        raise AssertionError("os.umask was called while writing")

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", forbidden)
        path = write_image(tmp_path / "out.png", image())
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
