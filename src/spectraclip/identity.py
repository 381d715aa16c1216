"""What makes an embedding space: the model fingerprint (weights + architecture) and the
preprocessing fingerprint (bands, normalisation, input size, resize, radiometry, missing-band policy).

Embeddings tables and indexes record both; whatever reads them with a model checks them with
`check_fingerprints`, so vectors of two embedding spaces are never compared without a word.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spectraclip.errors import FingerprintMismatchError

MODEL_KEY = "model_fingerprint"
PREPROCESSING_KEY = "preprocessing_fingerprint"
PREPROCESSING_SPEC_KEY = "preprocessing"


def _digest(h: Any) -> str:
    return h.hexdigest()[:16]


def weights_fingerprint(model: Any) -> str:
    """Hash of every tensor of `model.state_dict()` (names, dtypes, shapes, bytes) and its architecture."""
    import torch

    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    arch = getattr(cfg, "arch_config", None)
    h.update(json.dumps(arch, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(name.encode() + str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    return _digest(h)


def _tensor_versions(model: Any) -> tuple[tuple[int, int], ...] | None:
    """Storage address and in-place modification counter of every tensor: an optimiser step or
    `load_state_dict` bumps the counter, assigning new data changes the address."""
    try:
        return tuple((t.data_ptr(), t._version) for t in model.state_dict().values())
    except (AttributeError, RuntimeError):  # inference tensors keep no counter; no state_dict at all
        return None


def model_fingerprint(model: Any) -> str:
    """The model fingerprint, cached on the model until any of its tensors changes in place (training). A deferred
    model (weights not built yet, models/deferred.py) answers with its recorded one."""
    deferred = getattr(model, "deferred_fingerprint", None)
    if isinstance(deferred, str):
        return deferred
    versions = _tensor_versions(model)
    cached = getattr(model, "_spectraclip_fingerprint", None)
    if cached is not None and versions is not None and cached[0] == versions:
        return cached[1]
    fp = weights_fingerprint(model)
    if versions is not None:
        try:
            object.__setattr__(model, "_spectraclip_fingerprint", (versions, fp))
        except AttributeError:  # pragma: no cover - objects without a __dict__
            pass
    return fp




def preprocessing_spec(model: Any) -> dict[str, Any]:
    """The model's preprocessing as plain JSON data (`model.preprocessing_spec()`: groups, bands, statistics,
    radiometry, input size, resize/crop, missing-band policy, fusion)."""
    return json.loads(json.dumps(model.preprocessing_spec(), sort_keys=True, default=str))


def preprocessing_fingerprint(model: Any) -> str:
    """Hash of `preprocessing_spec(model)`."""
    text = json.dumps(preprocessing_spec(model), sort_keys=True, default=str)
    return _digest(hashlib.sha256(text.encode()))


@dataclass(frozen=True)
class Fingerprints:
    """Both fingerprints of one embedding space."""

    model: str
    preprocessing: str

    def to_metadata(self) -> dict[str, str]:
        """The embeddings-table / index metadata keys."""
        return {MODEL_KEY: self.model, PREPROCESSING_KEY: self.preprocessing}

    @classmethod
    def of(cls, model: Any) -> Fingerprints:
        return cls(model_fingerprint(model), preprocessing_fingerprint(model))

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Fingerprints | None:
        """The fingerprints recorded in table/index metadata, or None for a table that has none."""
        if MODEL_KEY not in meta or PREPROCESSING_KEY not in meta:
            return None
        return cls(str(meta[MODEL_KEY]), str(meta[PREPROCESSING_KEY]))


def check_fingerprints(recorded: Mapping[str, Any] | Fingerprints | None, model: Any, where: str, *,
                       force: bool = False, model_label: str = "the model given") -> None:
    """Refuse `where` (a table or index) made by another model or preprocessing than `model`, naming both.

    A table without fingerprints (written before they existed, or by another tool) is refused too,
    since nothing says it is the same space; `force=True` accepts either case.
    """
    if force:
        return
    have = recorded if isinstance(recorded, Fingerprints) or recorded is None else Fingerprints.from_metadata(recorded)
    want = Fingerprints.of(model)
    if have is None:
        raise FingerprintMismatchError(
            f"{where} records no model fingerprint, so nothing says it was embedded with {model_label} "
            f"(model {want.model}, preprocessing {want.preprocessing}); re-embed it, or pass --force")
    problems = []
    if have.model != want.model:
        problems.append(f"model fingerprint {have.model} (table) vs {want.model} ({model_label})")
    if have.preprocessing != want.preprocessing:
        problems.append(f"preprocessing fingerprint {have.preprocessing} (table) vs {want.preprocessing} "
                        f"({model_label})")
    if problems:
        raise FingerprintMismatchError(
            f"{where} was embedded in another embedding space than {model_label}'s: {'; '.join(problems)}. Use "
            "the model that made it, re-embed it with this one, or pass --force")


def check_same_space(recorded: Mapping[str, Fingerprints | None], purpose: str, *, force: bool = False) -> None:
    """Refuse to `purpose` (e.g. "merge into one set") tables whose fingerprints differ, naming each table's.

    `recorded` maps a table name (its path) to its fingerprints; a table without any is refused as well,
    since nothing says it shares the others' embedding space. `force=True` accepts them all.
    """
    if force or len(recorded) < 2:
        return
    missing = [name for name, fp in recorded.items() if fp is None]
    if missing:
        raise FingerprintMismatchError(
            f"cannot {purpose}: {', '.join(missing)} record(s) no model fingerprint, so nothing says they share "
            f"one embedding space with {', '.join(n for n in recorded if n not in missing) or 'each other'}; "
            "re-embed them, or pass --force")
    distinct = {(fp.model, fp.preprocessing) for fp in recorded.values() if fp is not None}
    if len(distinct) > 1:
        listing = "; ".join(f"{name}: model {fp.model}, preprocessing {fp.preprocessing}"
                            for name, fp in recorded.items() if fp is not None)
        raise FingerprintMismatchError(
            f"cannot {purpose}: the tables come from different embedding spaces ({listing}). Give tables "
            "made by one model and preprocessing, or pass --force")


__all__ = ["Fingerprints", "MODEL_KEY", "PREPROCESSING_KEY", "check_fingerprints", "check_same_space",
           "model_fingerprint",
           "preprocessing_fingerprint", "preprocessing_spec", "weights_fingerprint"]
