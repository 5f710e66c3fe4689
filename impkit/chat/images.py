"""An ``image_url`` part's data URI -> an RGB image, checked against the limits before decoding.

Only ``data:image/...;base64,...`` URIs: the server has no network, and a URL would make it fetch
what a client chooses. Every refusal is a 4xx naming the limit, never a 5xx: the byte size before
decoding the base64, the container format from the file's own header (not the URI's media type),
the pixel count from the header before the pixels are decoded, and a full decode last.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from impkit.chat.errors import ChatError
from impkit.config import ChatLimits

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.A)


def decode_data_uri(url: str, limits: ChatLimits, param: str) -> Image.Image:
    match = _DATA_URI.match(url)
    if match is None:
        if re.match(r"[a-zA-Z][\w+.-]*://", url):
            raise ChatError(
                400,
                "remote image URLs are not fetched (the server runs offline); send the image as a data URI",
                param=param,
                code="remote_image_url",
            )
        raise ChatError(400, "image_url.url must be a data URI: data:image/<format>;base64,<bytes>", param=param)
    if not match.group("b64"):
        raise ChatError(400, "the image data URI must be base64-encoded (';base64,')", param=param)
    payload = url[match.end() :]
    max_bytes = int(limits.max_image_mb * 1e6)
    if len(payload) * 3 // 4 > max_bytes:
        raise ChatError(413, f"image is over the {limits.max_image_mb:g} MB limit", param=param, code="image_too_large")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ChatError(400, "the image data URI is not valid base64", param=param, code="invalid_image") from None
    return open_image(data, limits, param)


def open_image(data: bytes, limits: ChatLimits, param: str) -> Image.Image:
    if len(data) > limits.max_image_mb * 1e6:
        raise ChatError(413, f"image is over the {limits.max_image_mb:g} MB limit", param=param, code="image_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, ValueError):
        raise ChatError(400, "the data is not an image Pillow can read", param=param, code="invalid_image") from None
    if fmt not in limits.image_formats:
        raise ChatError(
            415,
            f"image format {fmt} is not accepted; accepted: {', '.join(limits.image_formats)}",
            param=param,
            code="unsupported_image_format",
        )
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise ChatError(
            413,
            f"image is {width}x{height} pixels, over the limit of {limits.max_image_pixels}",
            param=param,
            code="image_too_many_pixels",
        )
    try:
        image.load()
        return image.convert("RGB")
    except Exception:  # a truncated or corrupt file fails somewhere in its codec
        raise ChatError(400, "the image is corrupt or truncated", param=param, code="invalid_image") from None
