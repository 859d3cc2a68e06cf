"""Video: frame count, size, rate, duration and audio kept; damaged input leaves nothing."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import sian
from sian.cli import app
from sian.inference import Pipeline
from sian.metrics import psnr_y
from sian.models import create_model
from sian.video import VideoError, derain_video
from sian.weights import save_weights

av = pytest.importorskip("av", reason="video needs PyAV (pip install 'sian-derain[video]')")


def make_clip(path, frames=12, size=(48, 64), fps=10, audio=True):
    """A moving gradient with bright vertical streaks (synthetic rain) and a 440 Hz tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[1], size[0], "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        y, x = np.mgrid[0 : size[0], 0 : size[1]]
        for i in range(frames):
            image = np.stack([(x + 3 * i) % 64 * 4, y * 5, np.full_like(x, 90)], -1).astype(np.uint8)
            image[:, (i * 7) % size[1] :: 9] = 250
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            t = np.arange(16000 * frames // fps) / 16000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def describe(path):
    with av.open(str(path)) as clip:
        video = clip.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in clip.decode(video)]
        info = {"frames": len(frames), "size": (video.width, video.height), "rate": video.average_rate,
                "duration": clip.duration, "audio": [s.codec_context.name for s in clip.streams.audio]}  # fmt: skip
    with av.open(str(path)) as clip:
        info["audio_packets"] = (
            [bytes(p) for p in clip.demux(clip.streams.audio[0]) if p.dts is not None] if (clip.streams.audio) else []
        )
    return info, frames


@pytest.fixture
def pipeline():
    torch.manual_seed(0)
    return Pipeline(create_model("sian", channels=4, stages=2).eval(), precision="fp32")


def test_a_derained_clip_keeps_frames_size_rate_duration_and_audio(tmp_path, pipeline):
    source = make_clip(tmp_path / "rain.mp4")
    counted = []
    report = derain_video(source, tmp_path / "out" / "rain.mp4", pipeline, batch=5, on_frames=counted.append)
    before, frames_in = describe(source)
    after, frames_out = describe(tmp_path / "out" / "rain.mp4")
    assert {k: v for k, v in after.items() if k != "audio_packets"} == {
        k: v for k, v in before.items() if k != "audio_packets"
    }
    assert after["audio_packets"] == before["audio_packets"]  # copied bit for bit, not re-encoded
    assert report.frames == 12 and counted == [5, 5, 2]  # batches of 5: memory bounded by the batch
    # The frames are the model's output, visually lossless at the default quality (crf 17; the luma
    # carries the detail, H.264's 4:2:0 halves the colour resolution as every player expects).
    expected = pipeline.quantize(pipeline.tensor(sian.io.to_tensor(frames_in[3])))
    assert psnr_y(frames_out[3], expected) > 38


def test_damaged_or_non_video_input_is_a_clear_error_and_writes_nothing(tmp_path, pipeline):
    good = make_clip(tmp_path / "good.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: len(good) // 3])
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01 this is no video" * 50)
    for name in ("cut.mp4", "junk.mp4"):
        with pytest.raises(VideoError, match=name):
            derain_video(tmp_path / name, tmp_path / "out" / name, pipeline)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sian_derain_takes_videos_beside_images(tmp_path):
    torch.manual_seed(0)
    model = create_model("sian", channels=4, stages=2)
    weights = save_weights(tmp_path / "tiny.safetensors", model, "sian", model.config)
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "clip.mp4", audio=False)
    (tmp_path / "in" / "broken.mov").write_bytes(b"junk")
    result = CliRunner().invoke(app, ["derain", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                      "--model", str(weights), "--video-crf", "0"])  # fmt: skip
    assert result.exit_code == 1 and "broken.mov" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4"]
    assert describe(tmp_path / "out" / "clip.mp4")[0]["frames"] == 12
