"""Figures turned into stored bytes when they are persisted: SVG for matplotlib charts, PNG for arrays."""

from __future__ import annotations

import io
from typing import Any


def figure_to_artifact(figure) -> dict[str, Any]:
    """Serialise ``figure.figure`` now, so the report never needs the live object."""
    obj = figure.figure
    if hasattr(obj, "savefig"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        # SVG keeps charts crisp in the PDF; a fixed hash salt and no date keep
        # the bytes identical between runs with the same findings.
        with matplotlib.rc_context({"svg.hashsalt": "audit", "svg.fonttype": "path"}):
            obj.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(obj)
        content, mime = buffer.getvalue(), "image/svg+xml"
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
