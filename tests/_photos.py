"""Tiny photo folders for the photo-path tests: RGB JPEG / PNG of mixed sizes, a labels CSV with blanks."""

from pathlib import Path

import numpy as np
from PIL import Image

#: Model input size of the photo tests (MobileNet accepts 32 px and more).
SIZE = (32, 32)


def write_photo_folder(folder: Path, n: int = 24, seed: int = 0) -> Path:
    """`n` RGB photos of mixed sizes (red and/or blue squares on noise) and `labels.csv` with blanks."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id,red,blue"]
    for i in range(n):
        h, w = (int(v) for v in rng.integers(20, 60, size=2))
        image = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
        red, blue = bool(i % 2), bool((i // 2) % 2)
        if red:
            image[: h // 2, : w // 2, 0] = 255
        if blue:
            image[h // 2:, w // 2:, 2] = 255
        name = f"photo_{i:02d}.{'jpg' if i % 3 else 'png'}"
        Image.fromarray(image).save(folder / name)
        cells = [str(int(red)) if rng.random() < 0.6 else "", str(int(blue)) if rng.random() < 0.6 else ""]
        if i < 4:  # every label keeps known positives and negatives
            cells = [str(int(red)), str(int(blue))]
        rows.append(",".join([name, *cells]))
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"
