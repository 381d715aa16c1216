"""Write a caption manifest for the EuroSAT-MS mini patches (../shared/data/eurosat-ms-mini) with simple
class captions; its `test` folder becomes the `val` split. Usage: python make_eurosat_manifest.py DATA OUT.jsonl"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TEMPLATES = ["a satellite image of {}", "{} seen from above", "a Sentinel-2 patch showing {}"]


def words(classname: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r" \1", classname).lower()


def main(data: Path, out: Path) -> None:
    rows = []
    for split_dir, split in (("train", "train"), ("test", "val")):
        for tif in sorted((data / split_dir).glob("*/*.tif")):
            name = words(tif.parent.name)
            rows.append({"id": tif.stem, "path": str(tif.resolve()), "bands": "eurosat-ms",
                         "captions": [t.format(name) for t in TEMPLATES], "split": split})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
