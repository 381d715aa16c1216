"""benchmarks/gpu_check.py runs on CPU in its small mode (no test needs a GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_dry_run_prints_its_one_table(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SPECTRACLIP_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.main(["--dry-run"])
    out = capsys.readouterr().out
    checks = [r["check"] for r in rows]
    assert any("fp32 embeddings vs CPU fp32" in c for c in checks)
    assert any("bf16 embeddings vs CPU fp32" in c for c in checks)
    assert any(c.startswith("open_clip eager fp32 forward") for c in checks)
    assert any(c.startswith("training step") for c in checks) and "choose_batch_size" in checks[-1]
    assert int(rows[-1]["value"]) >= 1
    fp32 = next(r for r in rows if "fp32 embeddings" in r["check"])
    assert float(fp32["min cosine"]) >= 0.99999  # the same model, the same mode on the same device
    assert out.count("\n| ") == len(rows) + 1  # one markdown table: a header and a row per check
