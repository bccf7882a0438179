"""Image folders: one sub-folder per class, optional attributes CSV keyed by file name."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from audit.errors import AuditError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_image_folder(path: Path, options):
    from PIL import Image, UnidentifiedImageError

    from audit.data import Dataset

    class_dirs = sorted(p for p in path.iterdir() if p.is_dir())
    if not class_dirs:
        raise AuditError(f"{path}: no class sub-folders; put each class's images in a folder named after the class")
    files, labels = [], []
    for index, folder in enumerate(class_dirs):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(file)
                labels.append(index)
    if not files:
        raise AuditError(f"{path}: no images found in the class folders ({', '.join(sorted(IMAGE_SUFFIXES))})")
    size = tuple(options.image_size) if options.image_size else None
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("L" if options.grayscale else "RGB")
                if size is None:
                    size = (image.height, image.width)
                if (image.height, image.width) != size:
                    image = image.resize((size[1], size[0]), Image.BILINEAR)
                images.append(np.asarray(image, dtype=np.float32) / 255.0)
        except (UnidentifiedImageError, OSError) as error:
            raise AuditError(f"{file}: not a readable image ({error})") from None
    x = np.stack(images)
    x = x[:, None, :, :] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    if options.mean is not None:
        x = x - np.asarray(options.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    if options.std is not None:
        x = x / np.asarray(options.std, dtype=np.float32).reshape(1, -1, 1, 1)
    attributes = {}
    if options.attributes_file:
        attributes = _attributes_for(Path(options.attributes_file), files, options.attributes)
    return Dataset(
        x=x.astype(np.float32),
        y=np.asarray(labels, dtype=np.int64),
        attributes=attributes,
        modality="image",
        class_names=[d.name for d in class_dirs],
    )


def _attributes_for(csv_path: Path, files: list[Path], wanted: list[str]) -> dict[str, np.ndarray]:
    if not csv_path.exists():
        raise AuditError(f"attributes file {csv_path} does not exist")
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "file" not in rows[0]:
        raise AuditError(f"{csv_path}: expected a 'file' column naming each image, plus attribute columns")
    by_name = {row["file"]: row for row in rows}
    columns = wanted or [c for c in rows[0] if c != "file"]
    out = {}
    for column in columns:
        values = []
        for file in files:
            row = by_name.get(file.name) or by_name.get(f"{file.parent.name}/{file.name}")
            if row is None:
                raise AuditError(f"{csv_path}: no row for image {file.parent.name}/{file.name}")
            values.append(row.get(column, ""))
        out[column] = np.asarray(values, dtype=str)
    return out
