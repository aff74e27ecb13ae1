"""Video I/O with PyAV: read every frame of a video, random access to frames by index (``VideoReader``), encode
frames as H.264 (lossless ``libx264rgb`` or lossy ``libx264``), and the upscaled preview videos of ``World``.
Local paths and ``s3://`` URLs are read alike."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from swm_core.s3 import is_s3
from swm_core.s3file import open_read


def _rgb_converter():
    """frame -> uint8 (H, W, 3) RGB with one shared swscale context (``frame.to_ndarray(format='rgb24')`` builds
    a new one per frame: ~10x slower on small frames)."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24").to_ndarray()


def read_video(path, storage_options=None) -> np.ndarray:
    """Every frame of a video file (local or ``s3://``) -> uint8 (T, H, W, 3)."""
    import av

    try:
        fh = open_read(path, storage_options, whole=True) if is_s3(path) else str(path)
        rgb = _rgb_converter()
        with av.open(fh) as container:
            frames = [rgb(f) for f in container.decode(video=0)]
    except FileNotFoundError:
        raise FileNotFoundError(f"no video file at {path}") from None
    except av.error.FFmpegError as err:
        raise ValueError(f"{path} is not a readable video (truncated or corrupted?): {err}") from None
    if not frames:
        raise ValueError(f"{path} holds no video frames (truncated or corrupted?)")
    return np.stack(frames)


class VideoReader:
    """Random access to the frames of one constant-frame-rate video: seek to the keyframe at or before a wanted
    frame, then decode forward (frames after the same keyframe share the decode). The keyframe index comes from
    one pass over the packets (no decoding)."""

    def __init__(self, file, fps: float | None = None, storage_options=None):
        import av

        self.name = str(file)
        source = open_read(file, storage_options, whole=True) if is_s3(file) else str(file)
        try:
            self.container = av.open(source)
            self.stream = self.container.streams.video[0]
            self.fps = Fraction(fps).limit_denominator(1001) if fps else Fraction(self.stream.average_rate)
            self.time_base = Fraction(self.stream.time_base)
            keys = [self._index(p.pts) for p in self.container.demux(self.stream) if p.pts is not None and p.is_keyframe]
            self.container.seek(0, stream=self.stream)
        except av.error.FFmpegError as err:
            raise ValueError(f"{file} is not a readable video (truncated or corrupted?): {err}") from None
        self.stream.codec_context.thread_count = 1  # frame threads delay the first frame after every seek (3x)
        self._rgb = _rgb_converter()
        self.keyframes = np.array(sorted(keys) or [0], np.int64)
        self._next: int | None = None  # index of the frame the decoder yields next (None: must seek)
        self._frames = None

    def _index(self, pts: int) -> int:
        return int(round(pts * self.time_base * self.fps))

    def _pts(self, index: int) -> int:
        return int(round(Fraction(index) / self.fps / self.time_base))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) -> uint8 (n, H, W, 3)."""
        import av

        indices = np.asarray(indices, np.int64).reshape(-1)
        got: dict[int, np.ndarray] = {}
        try:
            for k in np.unique(indices).tolist():
                key = int(self.keyframes[max(0, np.searchsorted(self.keyframes, k, side="right") - 1)])
                if self._next is None or k < self._next or key > self._next:
                    self.container.seek(self._pts(key), stream=self.stream, backward=True, any_frame=False)
                    self._frames = self.container.decode(self.stream)
                for frame in self._frames:
                    i = self._index(frame.pts)
                    self._next = i + 1
                    if i == k:
                        got[k] = self._rgb(frame)
                        break
                    if i > k:
                        raise ValueError(f"{self.name}: frame {k} not found (the stream jumps to frame {i})")
                else:
                    self._next = None
                    raise ValueError(f"{self.name}: frame {k} is past the end of the video")
        except av.error.FFmpegError as err:
            self._next = None
            raise ValueError(f"{self.name}: cannot decode (truncated or corrupted?): {err}") from None
        return np.stack([got[int(i)] for i in indices])

    def close(self) -> None:
        self.container.close()


def encode_video(path: Path, frames_iter, fps: float, *, lossless: bool, crf: int, gop: int, pix_fmt: str,
                 preset: str) -> None:
    """Encode the frames of every array of ``frames_iter`` (uint8 (T, H, W, 1 or 3)) as one H.264 video at ``path``:
    lossless (libx264rgb, qp 0) or lossy (libx264 at ``crf``, ``pix_fmt``), a keyframe every ``gop`` frames."""
    import av

    fps_q = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = None
        for frames in frames_iter:
            for frame in frames:
                if frame.shape[-1] == 1:
                    frame = np.repeat(frame, 3, axis=-1)
                elif frame.shape[-1] != 3:
                    raise ValueError(f"{path}: MP4 needs 1 or 3 channels, got frames of shape {frame.shape}")
                if stream is None:
                    h, w = frame.shape[:2]
                    if lossless:
                        stream = container.add_stream("libx264rgb", rate=fps_q)
                        stream.pix_fmt = "rgb24"
                        stream.options = {"qp": "0", "g": str(gop), "keyint_min": str(gop), "bf": "0",
                                          "preset": preset}
                    else:
                        if pix_fmt == "yuv420p" and (h % 2 or w % 2):
                            pix_fmt = "yuv444p"  # 4:2:0 needs even sizes
                        stream = container.add_stream("libx264", rate=fps_q)
                        stream.pix_fmt = pix_fmt
                        stream.options = {"crf": str(crf), "g": str(gop), "keyint_min": str(gop), "bf": "0",
                                          "preset": preset}
                    stream.width, stream.height = w, h
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)


def write_video(path, frames: Sequence[np.ndarray], fps: int = 10) -> Path:
    """Write uint8 (H, W, 3) frames to an MP4 (H.264 via PyAV), upscaled so small frames stay visible."""
    import av
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    scale = max(1, 256 // h)
    H, W = (h * scale + 1) // 2 * 2, (w * scale + 1) // 2 * 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for frame in frames:
            big = cv2.resize(frame, (W, H), interpolation=cv2.INTER_NEAREST)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(big), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
