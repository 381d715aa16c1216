"""Models whose weights load on first use (models/deferred.py), weights not drawn before a strict load
(`skip_weight_init`), and torchvision imported on first resize: what makes a warm `classify` skip ~5 s of loading."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from spectraclip.identity import model_fingerprint
from spectraclip.models.checkpoints import save_bundle
from spectraclip.models.loading import load_model
from spectraclip.models.spectral_clip import ModelConfigError, skip_weight_init

EUROSAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eurosat-ms-mini"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bundle(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("SPECTRACLIP_CACHE", str(tmp_path / "cache"))
    return save_bundle(tiny_model("msclip", seed=5), tmp_path / "bundle")


def test_a_bundle_loaded_again_is_deferred_and_builds_the_same_weights_on_first_use(bundle):
    first = load_model(checkpoint=bundle)
    assert first.deferred_fingerprint is None  # nothing recorded yet: loaded now, record written
    again = load_model(checkpoint=bundle)
    assert again.deferred_fingerprint == model_fingerprint(first) == model_fingerprint(again)
    assert again.config == first.config and not again.training
    assert again.learned_logit_scale == pytest.approx(float(first.clip.logit_scale.detach().exp()))
    visual = again.clip.visual  # first use
    assert again.deferred_fingerprint is None and isinstance(visual, torch.nn.Module)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(),
                                                  strict=True))
    x = torch.randn(2, len(first.bands), first.image_size, first.image_size)
    with torch.inference_mode():
        assert torch.equal(first.encode_image(x), again.encode_image(x))


@pytest.mark.parametrize("use", ["parameters", "state_dict", "to", "eval", "pickle"])
def test_every_way_of_reaching_the_weights_builds_them(bundle, use):
    load_model(checkpoint=bundle)
    model = load_model(checkpoint=bundle)
    assert model.deferred_fingerprint is not None
    if use == "parameters":
        assert len(list(model.parameters())) > 0
    elif use == "state_dict":
        assert "clip.visual.conv1.weight" in model.state_dict()
    elif use == "to":
        model.to("cpu")
    elif use == "eval":
        model.eval()
    else:
        model = pickle.loads(pickle.dumps(model))
        assert isinstance(model.clip, torch.nn.Module)
    assert model.deferred_fingerprint is None


def test_a_changed_file_is_loaded_anew_and_a_stale_record_is_an_error(bundle, tmp_path):
    load_model(checkpoint=bundle)
    weights = bundle / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # another modification time: another key
    assert load_model(checkpoint=bundle).deferred_fingerprint is None
    records = sorted((tmp_path / "cache" / "models").glob("*.json"))
    assert len(records) == 2
    for path in records:  # a record whose fingerprint is not the file's (the file changed under the same stat)
        rec = json.loads(path.read_text())
        rec["fingerprint"] = "0" * 16
        path.write_text(json.dumps(rec))
    stale = load_model(checkpoint=bundle)
    assert stale.deferred_fingerprint == "0" * 16
    with pytest.raises(ModelConfigError, match="model.safetensors.*not the recorded"):
        stale.clip  # noqa: B018 - the first use builds and checks the weights


def test_no_records_without_a_cache(bundle, monkeypatch):
    monkeypatch.setenv("SPECTRACLIP_CACHE", "off")
    load_model(checkpoint=bundle)
    assert load_model(checkpoint=bundle).deferred_fingerprint is None


def test_skip_weight_init_leaves_tensors_alone_in_its_thread_only():
    seen = {}

    def other() -> None:
        t = torch.zeros(1000)
        torch.nn.init.normal_(t)
        seen["other"] = bool(t.abs().sum() > 0)

    with skip_weight_init():
        t = torch.zeros(1000)
        torch.nn.init.normal_(t)
        torch.nn.init.kaiming_uniform_(t.view(10, 100))
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert not t.any()
    assert seen["other"]  # another thread building a model meanwhile still draws its weights
    torch.nn.init.normal_(t)
    assert t.any()


def test_a_checkpoint_file_loads_without_drawing_weights_and_matches(tmp_path, tiny_model):
    """`_from_file` builds with `init=False`: every weight still comes from the file (strict load)."""
    src = tiny_model("msclip", seed=7)
    path = tmp_path / "w.pt"
    torch.save(src.clip.state_dict(), path)
    got = load_model("tiny-test", checkpoint=path)
    assert all(torch.equal(a, b) for a, b in zip(src.clip.state_dict().values(), got.clip.state_dict().values(),
                                                  strict=True))


WARM_SCRIPT = r"""
import json, sys
import numpy as np
import spectraclip.api as sc
model = sc.load_model(checkpoint=sys.argv[1])
res = sc.classify(model, sys.argv[2:], ["forest", "river", "sea or lake"], templates="msclip", bands="eurosat-ms",
                  precision="int8", progress=False, batch_size=4)
print(json.dumps({"deferred": model.deferred_fingerprint is not None, "open_clip": "open_clip" in sys.modules,
                  "torchvision": "torchvision" in sys.modules, "probs": np.asarray(res.probabilities).tolist()}))
"""


@pytest.mark.slow  # two processes, one quantising (~11 s): `make test` only
@pytest.mark.skipif(not EUROSAT.is_dir(), reason="needs ../shared/data/eurosat-ms-mini")
def test_a_warm_int8_classify_never_builds_the_weights_and_gives_the_same_answer(bundle, tmp_path):
    from spectraclip.models.precision import int8_available

    if not int8_available():
        pytest.skip("needs an int8 backend")
    script = tmp_path / "warm.py"
    script.write_text(WARM_SCRIPT)
    files = [str(p) for p in sorted((EUROSAT / "test").rglob("*.tif"))[:6]]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}

    def run() -> dict:
        out = subprocess.run([sys.executable, str(script), str(bundle), *files], capture_output=True, text=True,
                             env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    assert not cold["deferred"] and cold["open_clip"]
    assert warm["deferred"] and not warm["open_clip"]  # neither open_clip nor the weights were needed
    assert not warm["torchvision"]  # resizing ran in the loader's worker process, which imports it itself
    assert np.array_equal(np.asarray(warm["probs"]), np.asarray(cold["probs"]))
