"""spectraclip: multispectral vision-language (CLIP) models for Earth observation.

`import spectraclip as sc` is fast: the face's functions (`spectraclip.api`) load on first use.

```python
import spectraclip as sc

model = sc.load_model("Llama3-MS-CLIP-Base")
sc.classify(model, "tiles/", ["forest", "river", "industrial area"]).to_pandas()
```
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_FACE = ("ClassifyResult", "EmbedResult", "FaceError", "Sample", "SearchResult", "change", "classify", "embed",
         "evaluate", "heatmap", "list_models", "load_model", "map_scene", "search", "train")

__all__ = ["__version__", *_FACE]


def __getattr__(name: str) -> Any:
    """The face's names (`spectraclip.api`; imported by name here, never statically, so the modules that read
    `__version__` do not depend on it), imported on first use (so `import spectraclip` does not import torch)."""
    if name in _FACE:
        value = getattr(importlib.import_module("spectraclip.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spectraclip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FACE])


class _Package(types.ModuleType):
    """The package module: three face functions share their names with subpackages (`change`, `evaluate`,
    `train`), and importing a subpackage binds it on its parent; here the face keeps those names
    (`import spectraclip.change.scene` still works: imports go through `sys.modules`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FACE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
