"""Benign video clips made in memory with PyAV for the video benchmark and the tests: moving
synthetic patterns and slideshows of scikit-image's bundled photos. Nothing is written to disk.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import av
import av.video.stream
import numpy as np
import numpy.typing as npt
from PIL import Image

Frame = npt.NDArray[np.uint8]


def sample_photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photos as an RGB image."""
    from skimage import data

    pixels = np.asarray(getattr(data, name)())
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L").convert("RGB")
    return Image.fromarray(pixels[..., :3], "RGB")


#: Container format name for PyAV (FFmpeg's muxer) by the pipeline's format name.
MUXERS = {"MP4": "mp4", "MOV": "mov", "M4V": "ipod", "3GP": "3gp", "WEBM": "webm"}
MUXERS["MKV"] = "matroska"


def encode_clip(
    frames: Iterable[Frame],
    *,
    fps: int = 25,
    codec: str = "libx264",
    container: str = "MP4",
    gop: int | None = None,
    options: dict[str, str] | None = None,
    timestamps: Iterable[int] | None = None,
) -> bytes:
    """The RGB ``frames`` (height x width x 3, even sides) encoded as a clip in memory; frame
    ``i`` shows at ``timestamps[i]`` frame periods (``i`` by default)."""
    times = iter(timestamps) if timestamps is not None else None
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=MUXERS[container]) as output:
        stream: av.video.stream.VideoStream | None = None
        for index, pixels in enumerate(frames):
            if stream is None:
                added = output.add_stream(codec, rate=fps)
                if not isinstance(added, av.video.stream.VideoStream):
                    raise ValueError(f"{codec} is not a video codec")
                stream = added
                stream.height, stream.width = pixels.shape[:2]
                stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
                stream.codec_context.gop_size = gop if gop is not None else 2 * fps
                stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
                stream.options.update(options or {})
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index if times is None else next(times)
            output.mux(stream.encode(frame))
        if stream is None:
            raise ValueError("a clip needs frames")
        output.mux(stream.encode(None))
    return buffer.getvalue()


def moving_pattern(
    seed: int, seconds: float, fps: int = 25, size: tuple[int, int] = (160, 120)
) -> Iterator[Frame]:
    """A textured pattern drifting across the frame, the texture seeded: a clip of its own."""
    rng = np.random.default_rng(seed)
    width, height = size
    texture = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    texture_image = Image.fromarray(texture)
    big = np.asarray(texture_image.resize((width * 2, height * 2), Image.Resampling.BILINEAR))
    for index in range(round(seconds * fps)):
        shift = index * 2
        yield np.ascontiguousarray(big[shift % height : shift % height + height, :width])


def slideshow(
    photos: Iterable[str],
    seconds_each: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
) -> Iterator[Frame]:
    """scikit-image photos one after another, each slowly zooming in (a video, not stills)."""
    for name in photos:
        photo = sample_photo(name)
        count = round(seconds_each * fps)
        for index in range(count):
            margin = index / count * 0.1
            box = (
                photo.width * margin / 2,
                photo.height * margin / 2,
                photo.width * (1 - margin / 2),
                photo.height * (1 - margin / 2),
            )
            yield np.asarray(photo.resize(size, Image.Resampling.BILINEAR, box=box))
