"""RESISC45-style RGB scene folders (`<root>/<class>/<class>_<nnn>.jpg`), e.g. NWPU-RESISC45.

8-bit RGB is expressed in reflectance digital numbers (x RGB_REFLECTANCE_SCALE / 255) as bands
B04, B03, B02, so an RGB OpenCLIP model wrapped by `spectraclip.models` sees exactly value / 255.
Standard split files `resisc45-{train,val,test}.txt` are used when present, else every image is `test`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectraclip.bands import BandSet
from spectraclip.data.base import Item, LabelledDataset, sorted_files
from spectraclip.data.errors import DatasetNotFoundError
from spectraclip.io.sample import RasterError, Sample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
RGB_DN_SCALE = 3000.0  # same convention as spectraclip.models.channels.RGB_REFLECTANCE_SCALE
DOWNLOAD = "https://www.tensorflow.org/datasets/catalog/resisc45 (NWPU-RESISC45.rar)"


def read_rgb_image(path: str | Path, sample_id: str | None = None) -> Sample:
    """An 8-bit RGB image as a Sample with bands B04,B03,B02 in reflectance-DN units."""
    from PIL import Image

    p = Path(path)
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise RasterError(p, f"cannot read image: {exc}") from exc
    px = np.ascontiguousarray(arr.transpose(2, 0, 1)) * np.float32(RGB_DN_SCALE / 255.0)
    return Sample(px, BandSet.parse("rgb"), sample_id or p.stem, str(p), meta={"source": "rgb-image"})


class RESISC45(LabelledDataset):
    """Scene classification from RGB image folders; classes are the sub-folder names."""

    name = "resisc45"
    all_bands = ("B04", "B03", "B02")
    multilabel = False
    citation = "Cheng et al., NWPU-RESISC45, Proc. IEEE 2017"

    def __init__(self, root: str | Path, split: str = "test", bands=None) -> None:
        root = Path(root).expanduser()
        expected = "<root>/<class>/<image>.jpg folders (one per scene class)"
        if not root.is_dir():
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        base = root / "NWPU-RESISC45" if (root / "NWPU-RESISC45").is_dir() else root
        classes = sorted(p.name for p in base.iterdir()
                         if p.is_dir() and sorted_files(p, IMAGE_SUFFIXES))
        if not classes:
            raise DatasetNotFoundError(self.name, root, expected, DOWNLOAD)
        files = [(c, f) for c in classes for f in sorted_files(base / c, IMAGE_SUFFIXES)]
        listing = next((b / f"resisc45-{split}.txt" for b in (root, root.parent)
                        if (b / f"resisc45-{split}.txt").is_file()), None)
        if listing is not None:
            wanted = {Path(x.strip()).stem for x in listing.read_text().splitlines() if x.strip()}
            files = [(c, f) for c, f in files if f.stem in wanted]
        elif split not in ("test", "all"):
            raise DatasetNotFoundError(self.name, root, f"resisc45-{split}.txt split file; without split "
                                       "files all images are the test split")
        items = [Item(f"{c}/{f.stem}", f, (c,)) for c, f in files]
        super().__init__(root, split, items, classes, bands=bands, available="rgb")

    def read(self, item: Item) -> Sample:
        return read_rgb_image(item.path, item.id)
