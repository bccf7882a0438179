"""Figures turned into stored bytes when they are persisted: PNG at print resolution, for charts and arrays alike."""

from __future__ import annotations

import io
from typing import Any


FIGURE_DPI = 150  # a 7-inch chart is 1050 pixels: sharp on A4 at the width the report prints it


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
        obj.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
        plt.close(obj)
        content, mime = buffer.getvalue(), "image/png"
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
