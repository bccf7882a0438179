"""Figures turned into stored bytes when they are persisted: PNG at print resolution, for charts and arrays alike."""

from __future__ import annotations

import io
from typing import Any


# A 6.4-inch chart is 640 pixels: sharp in the HTML (at most 1016 pixels wide) and at over 180 dpi at the
# 89 mm the PDF prints it. 150 dpi gave 1.3 MB of pixels that WeasyPrint decodes and re-compresses on
# every PDF render.
FIGURE_DPI = 100


def figure_to_artifact(figure) -> dict[str, Any]:
    """Serialise ``figure.figure`` now, so the report never needs the live object."""
    obj = figure.figure
    if hasattr(obj, "savefig"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        # PNG at print resolution, not SVG: WeasyPrint laid out the credit demo's 27
        # SVG charts (text as paths) in 15 s of a 15 s PDF render; a PNG is one image
        # to place. No date in the metadata keeps the bytes identical between runs.
        obj.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None},
                    facecolor="white")
        plt.close(obj)
        content, mime = opaque_png(buffer.getvalue()), "image/png"
    else:
        content, mime = array_to_png(obj), "image/png"
    return {
        "name": figure.name,
        "title": figure.title,
        "caption": figure.caption,
        "subject": figure.subject,
        "mime": mime,
        "content": content,
    }


def opaque_png(png: bytes) -> bytes:
    """The PNG without its alpha channel (charts are drawn on white): WeasyPrint writes an alpha channel
    as a second compressed image, a soft mask, so an RGBA chart costs two encodings in every PDF."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    if image.mode == "RGB":
        return png
    flat = Image.new("RGB", image.size, "white")
    flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
    buffer = io.BytesIO()
    flat.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def array_to_png(array) -> bytes:
    import numpy as np
    from PIL import Image

    data = np.asarray(array)
    if data.ndim == 3 and data.shape[0] in (1, 3) and data.shape[-1] not in (1, 3):
        data = data.transpose(1, 2, 0)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.dtype != np.uint8:
        low, high = float(np.nanmin(data)), float(np.nanmax(data))
        data = ((data - low) / (high - low if high > low else 1.0) * 255).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, format="PNG")
    return buffer.getvalue()
