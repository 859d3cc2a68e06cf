"""Video in, video out: every frame through the :class:`~sian.inference.Pipeline`, the audio copied.

Decoding and encoding go through PyAV (FFmpeg's libraries inside its wheel; no system ffmpeg). The
output keeps the input's frame count, size, frame rate and timestamps (so its duration), and carries
the input's audio streams as they are (remuxed, not re-encoded). Video is H.264 (``libx264``) at
``crf`` 17 by default, visually lossless; ``crf`` 0 is lossless, higher is smaller and worse.

Frames go through the model in batches of ``batch`` and are encoded as they come back, so memory stays
bounded whatever the clip's length. The output is written to a temporary file beside the target and
renamed at the end: a damaged input, a full disk or an interruption leave no half-written video.

Examples:
    >>> derain_video("clip.mp4", "derained/clip.mp4", Pipeline("sian-synth-light"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from ._atomic import atomic_path
from .inference import Pipeline
from .io import from_tensor, quantize, to_tensor

__all__ = ["VideoError", "VideoReport", "derain_video"]


class VideoError(ValueError):
    """A video that cannot be read, or written in the requested form."""


@dataclass
class VideoReport:
    source: Path
    target: Path
    frames: int
    width: int
    height: int
    rate: Fraction
    audio_streams: int
    seconds: float


def _import_av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - the extra is installed with [video]
        raise VideoError("video needs PyAV: pip install 'sian-derain[video]'") from exc
    return av


def derain_video(
    source: str | os.PathLike,
    target: str | os.PathLike,
    pipeline: Pipeline,
    *,
    crf: int = 17,
    batch: int = 4,
    overwrite: bool = False,
    on_frames: Callable[[int], None] | None = None,
) -> VideoReport:
    """Derain every frame of ``source`` into ``target`` (H.264, the audio copied); see the module notes.

    ``on_frames(n)`` is called after every ``n`` frames written (for a progress bar).
    """
    import time

    av = _import_av()
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    start = time.perf_counter()
    try:
        reader = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{source}: not a video FFmpeg can read ({exc})") from exc
    with reader:
        if not reader.streams.video:
            raise VideoError(f"{source}: has no video stream")
        video_in = reader.streams.video[0]
        rate = video_in.average_rate or video_in.guessed_rate
        if rate is None:
            raise VideoError(f"{source}: its frame rate is unknown")
        audio_in = list(reader.streams.audio)
        with atomic_path(target, overwrite=overwrite) as tmp:
            try:
                frames = _transcode(av, reader, video_in, audio_in, tmp, target.suffix, rate, pipeline, crf, batch,
                                    on_frames)  # fmt: skip
            except av.error.FFmpegError as exc:
                raise VideoError(f"{source}: damaged or unsupported video ({exc}); nothing was written") from exc
    if frames == 0:
        raise VideoError(f"{source}: no frame could be decoded")
    return VideoReport(source, target, frames, video_in.width, video_in.height, Fraction(rate), len(audio_in),
                       time.perf_counter() - start)  # fmt: skip


def _transcode(av, reader, video_in, audio_in, tmp: Path, suffix: str, rate, pipeline, crf, batch, on_frames) -> int:
    fmt = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "matroska", ".avi": "avi"}
    with av.open(str(tmp), mode="w", format=fmt.get(suffix.lower(), "mp4")) as writer:
        video_out = writer.add_stream("libx264", rate=rate)
        video_out.width, video_out.height = video_in.width, video_in.height
        video_out.pix_fmt = "yuv420p" if video_in.width % 2 == 0 and video_in.height % 2 == 0 else "yuv444p"
        video_out.options = {"crf": str(crf), "preset": "medium"}
        audio_out = {stream.index: writer.add_stream_from_template(stream) for stream in audio_in}
        pending: list = []
        written = 0

        def flush() -> int:
            arrays = [frame.to_ndarray(format="rgb24") for frame in pending]
            batch_tensor = torch.cat([to_tensor(a) for a in arrays])
            outputs = pipeline.tensor(batch_tensor)
            for frame, output in zip(pending, outputs, strict=True):
                out = av.VideoFrame.from_ndarray(quantize(from_tensor(output[None])), format="rgb24")
                out.pts, out.time_base = frame.pts, frame.time_base
                for packet in video_out.encode(out):
                    writer.mux(packet)
            count = len(pending)
            pending.clear()
            if on_frames is not None:
                on_frames(count)
            return count

        for packet in reader.demux(video_in, *audio_in):
            if packet.stream.index in audio_out:
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = audio_out[packet.stream.index]
                writer.mux(packet)
                continue
            for frame in packet.decode():
                pending.append(frame)
                if len(pending) == batch:
                    written += flush()
        if pending:
            written += flush()
        for packet in video_out.encode(None):
            writer.mux(packet)
    return written
