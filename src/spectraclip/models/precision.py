"""Precision modes for image encoding: fp32, bf16 (torch.autocast), fp16 (CUDA autocast) and int8.

`prepare_for_inference(model, mode, device)` returns an `ImageEncoder` whose `encode_image(x, present)`
the batch path calls whatever the mode; it always returns float32, L2-normalised `[B, D]` vectors.

Every mode is deterministic per item (issue #29): an item's vector does not depend on the other items of its
batch, so batch size, loader workers, Ray blocks, shards and resume points leave it as it is (tests/
test_determinism.py: int8 bit for bit, fp32 and bf16 within 1e-6 on this CPU; bf16 autocast takes another
kernel path for a batch of one, so the encoder pads such a batch to two rows).

int8 is static post-training quantisation of the image trunk with activation scales calibrated once per model
(min/max) on a fixed calibration sample of the model's own kind (`calibration_pixels`: synthetic inputs drawn
with a fixed seed in the model's normalised input space, so the same on every machine; no raster data ships in
the package). Two backends (`int8_backend`), chosen by measurement (docs/benchmarks.md, ViT-B at batch 16 on
this CPU: OpenVINO 3.2-5.8x open_clip's eager fp32 forward, ONNX Runtime 2.2-2.8x; both bit-identical across
batch sizes):
- `openvino` (when OpenVINO and NNCF are installed): NNCF's `quantize` (transformer preset, SmoothQuant off,
  min/max ranges, per-channel int8 weights) run by OpenVINO's CPU plugin (`models/openvino_trunk.py`);
- `onnxruntime` (the fallback): ONNX Runtime's `quantize_static`, QOperator format (int8 weights, uint8
  activations, VNNI kernels).
Either way only the transformer's MatMuls are quantised; the patch embedding stays fp32 (`INT8_OP_TYPES`). The
calibration fingerprint and backend are part of the cache key (`~/.cache/spectraclip/onnx`, `.../openvino`)
and are recorded in every table (`precision_calibration`, `precision_backend`). ONNX Runtime's dynamic
quantiser, used before, computed activation scales over the whole batch: a vector moved by up to 3.7e-3 with
the batch size. The image trunk (`clip.visual`) is exported to ONNX, quantised and run in place of the trunk;
patch embeddings, fusion of input groups and the text tower stay in torch. The model itself is never modified.
torchao's `Int8DynamicActivationInt8WeightConfig` was measured and dropped (0.7x fp32 on this CPU without
torch.compile). `SPECTRACLIP_INT8_BACKEND=onnxruntime|openvino` forces a backend.

Default (`mode="auto"`): the fastest candidate mode for the device (`default_precision`: on CPU int8 when
an int8 backend is installed, bf16 from batch 64 on a CPU with native bf16; on CUDA bf16, else fp16) that passes
the accuracy gate on the model itself (`accuracy_gate`: min cosine to fp32 >= 0.999 and zero-shot top-1
agreement >= 99.5 % on held-out inputs of the model's kind, computed once per model and cached); else fp32.
The gate's result is recorded in the table metadata (`precision_gate`). Measurements: docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from spectraclip.errors import SpectraclipError

if TYPE_CHECKING:
    from spectraclip.models.spectral_clip import SpectralCLIP

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
AUTO = "auto"
# Accuracy gate against fp32 on the same inputs: minimum cosine of the image embeddings.
MIN_COSINE = {"fp32": 1.0, "bf16": 0.999, "fp16": 0.999, "int8": 0.995}
BF16_MIN_BATCH = 64  # below this, bf16 autocast is slower than fp32 on this CPU (measured)
METADATA_KEY = "precision"
INT8_PER_CHANNEL = False  # per-output-channel weight scales (ONNX Runtime's per_channel); see docs/benchmarks.md
# Only the transformer's MatMul/Gemm are quantised; the patch embedding (Conv over all the bands) stays fp32.
# Measured on the demo MS bundle, 270 EuroSAT-MS patches: quantising the Conv too gave min cosine 0.9940 (under
# the 0.995 gate) and 99.6 % top-1 agreement; without it 0.99983 and 100 %, at the same speed.
INT8_OP_TYPES = ("MatMul", "Gemm")


class PrecisionError(SpectraclipError, ValueError):
    """An unknown precision mode, or one the device or installed packages cannot run."""


INT8_BACKENDS = ("openvino", "onnxruntime")  # preferred first (measured: module doc)
BACKEND_ENV = "SPECTRACLIP_INT8_BACKEND"


def _ort_available() -> bool:
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None


def int8_backend() -> str | None:
    """The int8 backend this environment runs: `SPECTRACLIP_INT8_BACKEND` when set (and installed), else OpenVINO +
    NNCF when importable, else ONNX Runtime; None when neither (or the onnx exporter) is installed."""
    import os
    from importlib.util import find_spec

    from spectraclip.models.openvino_trunk import openvino_available

    if find_spec("onnx") is None:  # the trunk is exported to ONNX first, for either backend
        return None
    have = {"openvino": openvino_available, "onnxruntime": _ort_available}
    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    if wanted:
        if wanted not in have:
            raise PrecisionError(f"{BACKEND_ENV}={wanted!r}: expected one of {', '.join(INT8_BACKENDS)}")
        return wanted if have[wanted]() else None
    return next((b for b in INT8_BACKENDS if have[b]()), None)


def int8_available() -> bool:
    """Whether an int8 backend (OpenVINO + NNCF, or ONNX Runtime) and the onnx exporter are installed."""
    return int8_backend() is not None


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast can be faster."""
    try:
        flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device: str | torch.device = "cpu", batch_size: int | None = None) -> str:
    """The fastest mode this device could use (the rule and its numbers: module doc), before the accuracy gate:
    `resolve_precision("auto", ..., model=...)` runs the gate on the model and falls back when it fails."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if dev.type == "cpu":
        if int8_available():
            return "int8"
        if cpu_has_bf16() and (batch_size or 0) >= BF16_MIN_BATCH:
            return "bf16"
    return "fp32"


def _candidates(device: torch.device, batch_size: int | None) -> list[str]:
    """Reduced modes `auto` may pick on `device`, fastest first (each only if it passes the gate)."""
    first = default_precision(device, batch_size)
    out = [first] if first != "fp32" else []
    if first == "int8" and cpu_has_bf16() and (batch_size or 0) >= BF16_MIN_BATCH:
        out.append("bf16")
    return out


def resolve_precision(mode: str | None, device: str | torch.device = "cpu", batch_size: int | None = None, *,
                      model: SpectralCLIP | None = None) -> str:
    """`mode` checked against the device. `auto`/None: with `model`, the fastest candidate mode that passes
    `accuracy_gate` on that model (else fp32); without one (option checking), `default_precision`."""
    if mode is None or mode == AUTO:
        if model is None:
            return default_precision(device, batch_size)
        for cand in _candidates(torch.device(device), batch_size):
            gate = accuracy_gate(model, cand, device)
            if gate["passed"]:
                return cand
            log.warning("precision auto: %s fails the accuracy gate on this model (min cosine %.5f, agreement "
                        "%.1f%%); trying the next mode", cand, gate["min_cosine"], 100 * gate["agreement"])
        return "fp32"
    if mode not in PRECISIONS:
        raise PrecisionError(f"--precision {mode!r}: expected auto or one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if mode == "fp16" and dev.type != "cuda":
        raise PrecisionError("--precision fp16 runs on CUDA only; on CPU use bf16 or int8")
    if mode == "int8":
        if dev.type != "cpu":
            raise PrecisionError(f"--precision int8 runs on CPU only (device {dev}); on a GPU use bf16 or fp16")
        if not int8_available():
            raise PrecisionError("--precision int8 needs onnx and openvino + nncf (or onnxruntime): "
                                 "pip install 'spectraclip[speed]'")
    return mode


@dataclass
class ImageEncoder:
    """A model prepared for one precision on one device; `encode_image` is the batch path's one call."""

    model: Any
    mode: str
    device: torch.device

    def encode_image(self, x: torch.Tensor | Mapping[str, torch.Tensor],
                     present: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Float32 L2-normalised `[B, D]` embeddings of normalised input (a tensor or `{group: tensor}`)."""
        multi = self.model.config.multi
        if not isinstance(x, torch.Tensor) and not multi:
            x = x[self.model.groups[0]]
        single = self.mode in ("bf16", "fp16") and _rows(x) == 1
        if single:  # autocast takes another kernel path for a batch of one (measured: 3e-3 off): pad to two rows
            x, present = _twice(x), _twice(present)
        with autocast_for(self.mode, self.device):
            feats = self.model.encode_image(x, present=present) if multi else self.model.encode_image(x)
        feats = feats[:1] if single else feats
        return torch.nn.functional.normalize(feats.float(), dim=-1)


def _rows(x: torch.Tensor | Mapping[str, torch.Tensor]) -> int:
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else int(next(iter(x.values())).shape[0])


def _twice(x: Any) -> Any:
    """A batch of one row repeated to two rows (a tensor or `{group: tensor}`; None stays None)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return torch.cat([x, x])
    return {k: torch.cat([v, v]) for k, v in x.items()}


def autocast_for(mode: str, device: torch.device):
    """The autocast context of a precision mode (disabled for fp32 and int8)."""
    if mode == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if mode == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def _weights_state(module: torch.nn.Module) -> tuple:
    """Identity of a module's current weights (storage and in-place version), to reuse a quantised copy; a deferred
    model's (weights not built yet) is its recorded fingerprint."""
    deferred = getattr(module, "deferred_fingerprint", None)
    if isinstance(deferred, str):
        return ("deferred", deferred)
    return tuple((p.data_ptr(), p._version) for p in module.parameters())


def _with_visual(model: SpectralCLIP, visual: torch.nn.Module) -> SpectralCLIP:
    """A shallow copy of `model` whose image trunk is `visual` (text tower and patch embeddings shared)."""
    clip = copy.copy(model.clip)
    clip._modules = dict(clip._modules)
    clip._modules["visual"] = visual
    view = copy.copy(model)
    view._modules = dict(view._modules)
    view._modules["clip"] = clip
    return view


class OrtTrunk(torch.nn.Module):
    """An ONNX Runtime session standing in for the image trunk: tensor in, float32 tensor out."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, input_name: str = "x", threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        self.threads = threads or torch.get_num_threads()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        self.path, self.input_name = Path(path), input_name
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


def trunk_example(model: SpectralCLIP) -> torch.Tensor:
    """An input of the trunk's shape: pixels for a single-group model, patch features for a multi-group one."""
    s = model.image_size
    first = model.groups[0]
    x = torch.zeros(2, len(model.config.group(first).bands), s, s)
    if model.patch_embeds is None:
        return x
    with torch.no_grad():
        return model.patch_embeds[first](x)


# -- the calibration sample: fixed inputs of the model's own kind ------------------------------------------------
CALIBRATION_VERSION = 1  # bump when the way calibration inputs are drawn changes (it is part of their fingerprint)
CALIBRATION_SEED, CALIBRATION_SIZE = 20250629, 32  # activation scales are calibrated on these
HELDOUT_SEED, HELDOUT_SIZE = 20250630, 64  # the accuracy gate runs on these (never seen by the calibration)
CALIBRATION_BATCH = 8


def calibration_pixels(model: SpectralCLIP, n: int = CALIBRATION_SIZE, seed: int = CALIBRATION_SEED
                       ) -> dict[str, torch.Tensor]:
    """`n` normalised inputs `{group: [n, C_g, S, S]}` of `model`'s kind, the same on every machine.

    Drawn with numpy's PCG64 from `seed` in the model's normalised input space, i.e. as standard scores of the
    model's own per-band mean/std (raw = mean + std * z, normalised back to z): spatially smooth fields (a coarse
    grid upsampled, so patches look like land cover rather than pixel noise), bands correlated through a shared
    component as reflectance bands are, plus fine texture. No raster data ships in the package, and calibration
    must not depend on which files a machine happens to hold: its fingerprint keys the cache and is recorded in
    every table."""
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(seed))
    s = model.image_size
    out = {}
    for g in model.groups:
        c = len(model.config.group(g).bands)
        coarse = rng.standard_normal((n, 1, 8, 8)) * 0.8 + rng.standard_normal((n, c, 8, 8)) * 0.5
        level = rng.standard_normal((n, c, 1, 1)) * 0.6
        up = torch.nn.functional.interpolate(torch.from_numpy(coarse).float(), size=(s, s), mode="bilinear",
                                             align_corners=False)
        fine = torch.from_numpy(rng.standard_normal((n, c, s, s)) * 0.2).float()
        out[g] = (up + fine + torch.from_numpy(level).float()).contiguous()
    return out


def _fingerprint_of(pixels: Mapping[str, torch.Tensor]) -> str:
    import hashlib

    h = hashlib.sha256(f"calibration-v{CALIBRATION_VERSION}".encode())
    for g in sorted(pixels):
        t = pixels[g].contiguous()
        h.update(g.encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes())
    return h.hexdigest()[:16]


_SAMPLE_FINGERPRINTS: dict[str, str] = {}


def _sample_recipe(model: SpectralCLIP, n: int, seed: int) -> str:
    """What the calibration sample of `model` is drawn from: rule version, seed, size, groups and band counts, and
    the numpy/torch versions that draw and resize it."""
    import hashlib
    import json

    import numpy as np

    recipe = {"v": CALIBRATION_VERSION, "n": n, "seed": seed, "size": model.image_size,
              "groups": [[g, len(model.config.group(g).bands)] for g in model.groups],
              "numpy": np.__version__, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def sample_fingerprint(model: SpectralCLIP, n: int = CALIBRATION_SIZE, seed: int = CALIBRATION_SEED) -> str:
    """`_fingerprint_of(calibration_pixels(model, n, seed))`, the hash of the sample's bytes, remembered per recipe
    (in memory and in the cache folder, `calibration/`): drawing and hashing the sample takes ~0.6 s, and every warm
    int8 run needs the fingerprint for its cache key."""
    recipe = _sample_recipe(model, n, seed)
    if recipe in _SAMPLE_FINGERPRINTS:
        return _SAMPLE_FINGERPRINTS[recipe]
    from spectraclip.cache import cache_root

    root = cache_root()
    path = None if root is None else root / "calibration" / f"{recipe}.txt"
    if path is not None and path.is_file():
        fp = path.read_text().strip()
    else:
        fp = _fingerprint_of(calibration_pixels(model, n, seed))
        if path is not None:
            from spectraclip.io.atomic import atomic_open

            with atomic_open(path) as fh:
                fh.write(fp + "\n")
    _SAMPLE_FINGERPRINTS[recipe] = fp
    return fp


def calibration_fingerprint(model: SpectralCLIP) -> str:
    """Hash of the calibration sample of `model` (its bytes, shapes and the drawing rule's version)."""
    return sample_fingerprint(model)


def trunk_inputs(model: SpectralCLIP, pixels: Mapping[str, torch.Tensor], batch: int = CALIBRATION_BATCH
                 ) -> list[torch.Tensor]:
    """What the image trunk (`clip.visual`) receives when `model` encodes `pixels` in fp32, batch by batch
    (pixels for a single-group model, each group's patch features for a multi-group one)."""
    seen: list[torch.Tensor] = []
    hook = model.clip.visual.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    try:
        n = next(iter(pixels.values())).shape[0]
        with torch.inference_mode(), autocast_for("fp32", torch.device("cpu")):
            for i in range(0, n, batch):
                part = {g: t[i:i + batch] for g, t in pixels.items()}
                if model.config.multi:
                    model.encode_image(part)
                else:
                    model.encode_image(part[model.groups[0]])
    finally:
        hook.remove()
    return seen


def backend_runtime(backend: str) -> str:
    """The backend's versions as they key caches (`ort1.x` or `ov2026.x-nncf3.x`)."""
    if backend == "openvino":
        from spectraclip.models.openvino_trunk import openvino_versions

        return openvino_versions()
    import onnxruntime as ort

    return f"ort{ort.__version__}"


def int8_trunk_path(model: SpectralCLIP, tag: str = "visual", calibration: str | None = None,
                    backend: str | None = None) -> Path | None:
    """Where the quantised trunk `tag` of this model is cached (None when the cache is disabled): keyed by the
    model fingerprint, the calibration fingerprint, the backend and its version."""
    from spectraclip.cache import cache_root
    from spectraclip.identity import model_fingerprint

    root = cache_root()
    backend = backend or int8_backend() or "onnxruntime"
    calibration = calibration or calibration_fingerprint(model)
    if backend == "openvino":  # NNCF, static scales; OpenVINO IR (.xml + .bin)
        name = f"{model_fingerprint(model)}-{tag}-int8nncf-cal{calibration}-{backend_runtime(backend)}.xml"
        return None if root is None else root / "openvino" / name
    kind = "int8sq-pc" if INT8_PER_CHANNEL else "int8sq"  # static scales, QOperator format
    name = f"{model_fingerprint(model)}-{tag}-{kind}-cal{calibration}-{backend_runtime(backend)}.onnx"
    return None if root is None else root / "onnx" / name


class _QuantiserHint(logging.Filter):
    """Drops ONNX Runtime's quantiser hints to run its shape pre-processing (measured: no gain on this trunk) and to
    exclude the attention's Gemm with a computed bias (it stays fp32 in QDQ anyway)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return "pre-processing before quantization" not in msg and "Please exclude this node" not in msg


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a fixed list of trunk inputs."""

    def __init__(self, inputs: list[torch.Tensor], name: str = "x") -> None:
        self._it = iter([{name: t.to(torch.float32).contiguous().numpy()} for t in inputs])

    def get_next(self):
        return next(self._it, None)


def quantize_module_int8(model: SpectralCLIP, module: torch.nn.Module, example: torch.Tensor,
                         tag: str, backend: str | None = None) -> torch.nn.Module:
    """`module` (part of `model` taking the image trunk's input) as an int8 trunk of `backend` (default
    `int8_backend()`: an `OvTrunk` or an `OrtTrunk`) with static activation scales: read from the cache (keyed
    by the model fingerprint, `tag`, the calibration fingerprint and the backend), or exported, calibrated once
    on `calibration_pixels(model)` (min/max of each activation) and quantised (`INT8_OP_TYPES`), then cached.
    Static scales make every row's result independent of the other rows of its batch (dynamic quantisation
    computes them per batch: issue #29)."""
    import tempfile

    from spectraclip.models.export import trace_to_onnx

    backend = backend or int8_backend()
    if backend is None:
        raise PrecisionError("int8 needs onnx and openvino + nncf (or onnxruntime): pip install 'spectraclip[speed]'")
    target = int8_trunk_path(model, tag, calibration_fingerprint(model), backend)
    cached = _open_if_cached(target, backend)
    if cached is not None:
        return cached
    pixels = calibration_pixels(model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / f"{tag}.onnx"
        log.info("exporting, calibrating and quantising %s to int8 with %s (once per model)", tag, backend)
        trace_to_onnx(module.eval(), (example,), fp32, ["x"])
        if backend == "openvino":
            from spectraclip.models.openvino_trunk import OvTrunk, quantize_openvino

            dest_ov = target or Path(tmp) / f"{tag}-int8.xml"
            quantize_openvino(fp32, trunk_inputs(model, pixels), dest_ov)
            return OvTrunk(dest_ov)  # compiled in memory: the temporary files may go
        return _quantize_ort(model, pixels, fp32, Path(tmp), tag, target)


def _open_if_cached(path: Path | None, backend: str) -> torch.nn.Module | None:
    """The int8 trunk cached at `path` (`int8_trunk_path`), opened; None when it is not there."""
    return _open_trunk(path, backend) if path is not None and path.is_file() else None


def _open_trunk(path: Path, backend: str) -> torch.nn.Module:
    if backend == "openvino":
        from spectraclip.models.openvino_trunk import OvTrunk

        return OvTrunk(path)
    return OrtTrunk(path)


def _quantize_ort(model: SpectralCLIP, pixels: Mapping[str, torch.Tensor], fp32: Path, tmp: Path, tag: str,
                  target: Path | None) -> OrtTrunk:
    """ONNX Runtime's static quantiser (QOperator) on the exported fp32 graph `fp32`, calibrated on `pixels`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from spectraclip.io.atomic import atomic_path

    pre = Path(tmp) / f"{tag}-pre.onnx"  # ONNX Runtime's pre-processing (constant folding): measured faster
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    dest = target or Path(tmp) / f"{tag}-int8.onnx"
    hint = _QuantiserHint()
    logging.getLogger().addFilter(hint)
    try:
        with atomic_path(dest) as out:
            # QOperator (QLinearMatMul, uint8 activations): 1.26x QDQ's speed on the ViT-B trunk (same run)
            quantize_static(str(pre), str(out), _Reader(trunk_inputs(model, pixels)),
                            quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=INT8_PER_CHANNEL,
                            op_types_to_quantize=list(INT8_OP_TYPES),
                            calibrate_method=CalibrationMethod.MinMax,
                            calibration_providers=["CPUExecutionProvider"],
                            extra_options={"CalibTensorRangeSymmetric": False})
    finally:
        logging.getLogger().removeFilter(hint)
    return OrtTrunk(dest)  # the session holds the graph in memory: the temporary file may go


# model -> {tag: (weights state, int8 session)}; outside the model so that pickling or copying it never meets a
# session
_INT8_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def int8_part(model: SpectralCLIP, tag: str, module: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """The int8 trunk of `module` (a part of `model`), built once per model, tag and backend (and cached on
    disk), reused while the part's weights stay the same, reopened from its file when torch's thread count
    changes."""
    state = _weights_state(module)
    backend = int8_backend()
    trunk = _memoised(model, tag, state, backend)
    if trunk is None:
        memo = _INT8_PARTS[model].get(tag)
        if memo is not None and memo[0] != state:  # the weights changed in place: the memoised fingerprint too
            model.__dict__.pop("_spectraclip_fingerprint", None)
        trunk = quantize_module_int8(model, module, example, tag, backend)
        _INT8_PARTS[model][tag] = (state, trunk)
    return trunk


def _memoised(model: SpectralCLIP, tag: str, state: tuple, backend: str | None) -> torch.nn.Module | None:
    """The memoised int8 trunk of `model`'s part `tag` while its weights state and backend are unchanged (reopened
    from its file when torch's thread count changed); None when there is none."""
    memo = _INT8_PARTS.setdefault(model, {}).get(tag)
    if memo is None or memo[0] != state or memo[1].backend != backend:
        return None
    if memo[1].threads != torch.get_num_threads() and memo[1].path.is_file():  # follow torch's thread count
        memo = _INT8_PARTS[model][tag] = (state, _open_trunk(memo[1].path, backend))
    return memo[1]


def cached_int8_trunk(model: SpectralCLIP) -> torch.nn.Module | None:
    """The int8 image trunk of a single-group `model` when its cache file exists (else None), opened without
    touching the model's weights (memoised per model like `int8_part`)."""
    if model.config.multi:
        return None
    backend = int8_backend()
    if backend is None:
        return None
    state = _weights_state(model)
    trunk = _memoised(model, "visual", state, backend)
    if trunk is None:
        trunk = _open_if_cached(int8_trunk_path(model, "visual", calibration_fingerprint(model), backend), backend)
        if trunk is not None:
            _INT8_PARTS[model]["visual"] = (state, trunk)
    return trunk


class TrunkView:
    """A single-group model's image path through a stand-in trunk (`visual`) alone: what `SpectralCLIP.encode_image`
    computes (`clip.encode_image`: the trunk's features, L2-normalised) without building the torch weights."""

    def __init__(self, model: SpectralCLIP, trunk: torch.nn.Module) -> None:
        self.model, self.trunk, self.config = model, trunk, model.config
        self.groups = model.groups

    def encode_image(self, x: torch.Tensor, normalize: bool = True, present: Any = None) -> torch.Tensor:
        self.model._check_group_batch(self.groups[0], x)
        feats = self.trunk(x)
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats


def quantize_int8(model: SpectralCLIP) -> torch.nn.Module:
    """The int8 image trunk (`clip.visual`) of `model` on `int8_backend()`, memoised like `int8_part`."""
    return int8_part(model, "visual", model.clip.visual, trunk_example(model))


def prepare_for_inference(model: SpectralCLIP, mode: str | None = AUTO, device: str | torch.device = "cpu",
                          batch_size: int | None = None) -> ImageEncoder:
    """The `ImageEncoder` for `mode` (auto: the fastest mode that passes the gate on this model) with the model
    in eval mode on `device`.

    The int8 trunk is built once per model (and cached on disk) and reused while the weights stay the same.
    """
    dev = torch.device(device)
    resolved = resolve_precision(mode, dev, batch_size, model=model)
    if resolved == "int8" and getattr(model, "deferred_fingerprint", None) is not None:
        trunk = cached_int8_trunk(model)
        if trunk is not None:  # a warm run: the int8 trunk from the cache, torch weights never built
            return ImageEncoder(TrunkView(model, trunk), resolved, dev)
    model.eval().to(dev)
    if resolved != "int8":
        return ImageEncoder(model, resolved, dev)
    return ImageEncoder(_with_visual(model, quantize_int8(model)), resolved, dev)


# -- the accuracy gate, per model ------------------------------------------------------------------------------------
GATE_MIN_COSINE = 0.999  # min cosine to fp32 over the held-out inputs
GATE_MIN_AGREEMENT = 0.995  # zero-shot top-1 agreement with fp32 (the proxy classes) over the held-out inputs
_GATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(mode, device): (state, result)}


def _gate_path(model: SpectralCLIP, mode: str, device: torch.device) -> Path | None:
    from spectraclip.cache import cache_root
    from spectraclip.identity import model_fingerprint

    root = cache_root()
    if root is None:
        return None
    if mode == "int8":
        runtime = f"{backend_runtime(int8_backend() or 'onnxruntime')}-cal{calibration_fingerprint(model)}"
    else:
        runtime = f"torch{torch.__version__.split('+')[0]}-{device.type}"
    return root / "gates" / f"{model_fingerprint(model)}-{mode}-{runtime}.json"


# The zero-shot proxy: a fixed set of land-cover prompts encoded by the model's own text tower (fp32).
PROXY_CLASSES = ("annual crop land", "a forest", "herbaceous vegetation", "a highway", "industrial buildings",
                 "a pasture", "permanent crop land", "residential buildings", "a river", "a sea or lake",
                 "bare soil", "snow and ice", "clouds", "a wetland", "an airport", "a desert")


def proxy_classes(model: SpectralCLIP) -> torch.Tensor:
    """L2-normalised fp32 text embeddings `[K, D]` of `PROXY_CLASSES` ("a satellite image of {}.")."""
    from spectraclip.models.text_trim import encode_text_trimmed

    tokens = model.tokenize([f"a satellite image of {c}." for c in PROXY_CLASSES])
    dev = next(model.parameters()).device
    with torch.inference_mode(), autocast_for("fp32", dev):
        return torch.nn.functional.normalize(encode_text_trimmed(model, tokens.to(dev)).float(), dim=-1).cpu()


def nn_agreement(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Fraction of rows whose nearest other row (cosine) is the same in `got` as in `ref`."""
    def nearest(v: torch.Tensor) -> torch.Tensor:
        sim = v @ v.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(1)

    return float((nearest(got) == nearest(ref)).float().mean())


def accuracy_gate(model: SpectralCLIP, mode: str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Whether `mode` is close enough to fp32 on this model: both run on `HELDOUT_SIZE` held-out inputs of the
    model's kind (`calibration_pixels` with `HELDOUT_SEED`: never the calibration sample); passes when the min
    cosine is >= `GATE_MIN_COSINE` and zero-shot top-1 agreement on a fixed proxy (`PROXY_CLASSES` through
    the model's text tower) >= `GATE_MIN_AGREEMENT`. Nearest-neighbour agreement among the held-out rows is
    recorded too but does not gate: on synthetic inputs through a random-weight model the rows are near-ties, so
    it measures the ties, not the mode. Computed once per
    model, mode and runtime (kept in memory and in the cache folder, `gates/`); the result goes into every
    table's metadata (`precision_metadata`)."""
    import json

    dev = torch.device(device)
    state = _weights_state(model)
    memo = _GATES.setdefault(model, {})
    key = (mode, dev.type, int8_backend() if mode == "int8" else None)
    hit = memo.get(key)
    if hit is not None and hit[0] == state:
        return hit[1]
    path = _gate_path(model, mode, dev)
    if path is not None and path.is_file():
        result = json.loads(path.read_text())
    else:
        pixels = calibration_pixels(model, HELDOUT_SIZE, HELDOUT_SEED)
        model.eval().to(dev)
        fp32 = ImageEncoder(model, "fp32", dev)
        other = prepare_for_inference(model, mode, dev)
        refs, gots = [], []
        with torch.inference_mode():
            for i in range(0, HELDOUT_SIZE, CALIBRATION_BATCH):
                part = {g: t[i:i + CALIBRATION_BATCH].to(dev) for g, t in pixels.items()}
                refs.append(fp32.encode_image(part).cpu())
                gots.append(other.encode_image(part).cpu())
        ref, got = torch.cat(refs), torch.cat(gots)
        cos = float((ref * got).sum(1).min())
        cls = proxy_classes(model)
        agree = float(((got @ cls.T).argmax(1) == (ref @ cls.T).argmax(1)).float().mean())
        result = {"mode": mode, **({"backend": int8_backend()} if mode == "int8" else {}),
                  "min_cosine": round(cos, 6), "agreement": round(agree, 4),
                  "nn_agreement": round(nn_agreement(got, ref), 4),
                  "passed": bool(cos >= GATE_MIN_COSINE and agree >= GATE_MIN_AGREEMENT), "inputs": HELDOUT_SIZE,
                  "heldout": _fingerprint_of(pixels), "thresholds": [GATE_MIN_COSINE, GATE_MIN_AGREEMENT]}
        if path is not None:
            from spectraclip.io.atomic import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                Path(tmp).write_text(json.dumps(result, sort_keys=True))
    memo[key] = (state, result)
    return result


def precision_metadata(model: SpectralCLIP, mode: str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """What a table records next to its precision: for int8 the calibration sample's fingerprint and the backend
    (`openvino`, or `onnxruntime` with why: OpenVINO + NNCF not importable, or forced), for every reduced mode
    the accuracy gate's result on this model (fp32 records nothing more)."""
    if mode == "fp32":  # after `auto` fell back: the gate that failed on this model says why
        state = _weights_state(model)
        failed = [r for st, r in _GATES.get(model, {}).values() if st == state and not r["passed"]]
        return {"precision_gate": failed[0]} if failed else {}
    out: dict[str, Any] = {"precision_gate": accuracy_gate(model, mode, device)}
    if mode == "int8":
        out["precision_calibration"] = calibration_fingerprint(model)
        out["precision_backend"] = _backend_record(int8_backend() or "onnxruntime")
    return out


def _backend_record(backend: str) -> str:
    """`openvino (ov2026.x-nncf3.x)`; for ONNX Runtime also why it is not OpenVINO."""
    import os

    from spectraclip.models.openvino_trunk import openvino_available

    record = f"{backend} ({backend_runtime(backend)})"
    if backend == "onnxruntime":
        why = f"{BACKEND_ENV}=onnxruntime" if os.environ.get(BACKEND_ENV) else "openvino + nncf not importable"
        record += f"; fallback: {why}" if not openvino_available() or os.environ.get(BACKEND_ENV) else ""
    return record


__all__ = ["AUTO", "BF16_MIN_BATCH", "CALIBRATION_SEED", "CALIBRATION_SIZE", "GATE_MIN_AGREEMENT", "GATE_MIN_COSINE",
           "HELDOUT_SEED", "HELDOUT_SIZE", "ImageEncoder", "METADATA_KEY", "MIN_COSINE", "OrtTrunk", "PRECISIONS",
           "PrecisionError", "TrunkView", "accuracy_gate", "autocast_for", "cached_int8_trunk",
           "calibration_fingerprint", "calibration_pixels",
           "cpu_has_bf16", "default_precision", "int8_available", "int8_backend", "int8_part", "int8_trunk_path",
           "nn_agreement", "proxy_classes",
           "precision_metadata", "prepare_for_inference", "quantize_int8", "quantize_module_int8",
           "resolve_precision", "trunk_example", "trunk_inputs"]
