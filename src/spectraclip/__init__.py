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


class _FaceAndPackage:
    """`spectraclip.change`, `.evaluate` and `.train` are both a face function and a subpackage. Once the subpackage
    is imported, the name holds this object: calling it runs the face's function, and its attributes are the
    subpackage's, so `sc.change(...)` and `import spectraclip.change.scene` / `spectraclip.train.config` both work."""

    def __init__(self, name: str, package: types.ModuleType) -> None:
        object.__setattr__(self, "_face_name", name)
        object.__setattr__(self, "_package", package)
        object.__setattr__(self, "__module__", "spectraclip.api")  # where the function is defined
        object.__setattr__(self, "__name__", name)
        object.__setattr__(self, "__qualname__", name)

    def _function(self) -> Any:
        return getattr(importlib.import_module("spectraclip.api"), self._face_name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr in ("__wrapped__", "__signature__", "__doc__"):
            return getattr(self._function(), attr) if attr != "__wrapped__" else self._function()
        return getattr(self._package, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._package, attr, value)  # a submodule bound on its parent package

    def __repr__(self) -> str:
        return f"<spectraclip.{self._face_name}: the face function and the package {self._package.__name__}>"


class _Package(types.ModuleType):
    """The package module: importing a subpackage binds it on its parent; for the three names shared with face
    functions (`change`, `evaluate`, `train`) the binding is a `_FaceAndPackage` that is both."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FACE and isinstance(value, types.ModuleType):
            value = _FaceAndPackage(name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
