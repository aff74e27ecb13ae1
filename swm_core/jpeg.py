"""JPEG codec for image frames: simplejpeg where installed, else OpenCV.

Frames are uint8 (H, W, C) with 1 (grayscale) or 3 (RGB) channels. Chroma subsampling is one of
``JPEG_SUBSAMPLINGS``: 4:4:4 keeps full colour resolution (our default); 4:2:0 (what most tools and the
stable-worldmodel package write) halves it both ways: ~2.5x smaller 224 px frames that also decode faster.
"""

from __future__ import annotations

import numpy as np

try:
    import simplejpeg
except ImportError:  # pragma: no cover - exercised only where simplejpeg is missing
    simplejpeg = None
    import cv2

JPEG_SUBSAMPLINGS = ("444", "422", "420")


def check_jpeg_subsampling(value) -> str:
    """``value`` as one of JPEG_SUBSAMPLINGS ('444', '422', '420'; 420 and 4:2:0 are accepted too), else a
    ValueError naming it."""
    text = str(value).replace(":", "")
    if text not in JPEG_SUBSAMPLINGS:
        raise ValueError(f"jpeg_subsampling must be one of {JPEG_SUBSAMPLINGS}, got {value!r}")
    return text


def encode_jpeg(image: np.ndarray, quality: int, subsampling: str = "444") -> bytes:
    """One uint8 (H, W, C) frame -> JPEG bytes."""
    channels = image.shape[-1]
    if simplejpeg is not None:
        return simplejpeg.encode_jpeg(
            np.ascontiguousarray(image), quality=quality, colorspace="RGB" if channels == 3 else "GRAY",
            colorsubsampling=subsampling if channels == 3 else "Gray",
        )
    bgr = image[..., ::-1] if channels == 3 else image[..., 0]
    factor = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{subsampling}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality,
                                                               cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
    if not ok:
        raise ValueError(f"OpenCV failed to JPEG-encode an image of shape {image.shape}")
    return buf.tobytes()


def encode_frames(frames: np.ndarray, quality: int, subsampling: str = "444") -> list[bytes]:
    """JPEG bytes per frame; a frame equal to the one before it (a goal image held for an episode) reuses its
    bytes instead of being encoded again."""
    out: list[bytes] = []
    for i, frame in enumerate(frames):
        same = i > 0 and np.array_equal(frame, frames[i - 1])
        out.append(out[-1] if same else encode_jpeg(frame, quality, subsampling))
    return out


def encode_jpegs(frames: np.ndarray, quality: int, subsampling: str = "444") -> np.ndarray:
    """Frames (T, H, W, C) -> a 1-D object array of their JPEG bytes (each frame encoded)."""
    out = np.empty(len(frames), object)
    out[:] = [encode_jpeg(f, quality, subsampling) for f in frames]
    return out


def decode_jpeg_into(data, out: np.ndarray) -> None:
    """Decode one JPEG (bytes-like) into ``out`` (H, W, C) uint8 in place."""
    channels = out.shape[-1]
    if simplejpeg is not None:
        simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY", buffer=out)
        return
    flag = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    out[...] = (img[..., ::-1] if channels == 3 else img[..., None]).reshape(out.shape)


def decode_jpegs(blobs, shape) -> np.ndarray:
    """JPEG blobs (bytes or uint8 arrays) of frames of per-frame ``shape`` (H, W, C) -> uint8 (n, H, W, C)."""
    out = np.empty((len(blobs), *shape), np.uint8)
    for i, b in enumerate(blobs):
        decode_jpeg_into(np.frombuffer(b, np.uint8) if isinstance(b, bytes) else b, out[i])
    return out


def jpeg_header(data) -> tuple[int, int, int, str | None]:
    """(height, width, channels, chroma subsampling: '444'/'422'/'420'/..., 'Gray', or None where unknown)."""
    if simplejpeg is not None:
        height, width, colorspace, subsampling = simplejpeg.decode_jpeg_header(bytes(data))
        return height, width, 1 if colorspace.lower() == "gray" else 3, subsampling
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2], None


def whole_jpeg_header(data) -> tuple[int, int, int, str | None]:
    """``jpeg_header(data)`` of a JPEG that also starts with SOI and ends with EOI (zero padding allowed): the header
    of a truncated JPEG still reads, its end marker is gone. ValueError otherwise."""
    b = bytes(data)
    if b[:2] != b"\xff\xd8" or b.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ValueError(f"not a whole JPEG: {len(b)} bytes starting {b[:2].hex() or '-'} and ending "
                         f"{b[-2:].hex() or '-'} (a JPEG starts ffd8 and ends ffd9: truncated or not a JPEG)")
    return jpeg_header(b)


def jpeg_shape(data) -> tuple[int, int, int]:
    """(height, width, channels) of one JPEG."""
    return jpeg_header(data)[:3]
