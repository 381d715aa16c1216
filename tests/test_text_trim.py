"""Trimmed text encoding gives open_clip's full-context embeddings."""

from __future__ import annotations

import torch
from fixtures_models import randomize

from spectraclip.models.loading import load_model
from spectraclip.models.text_trim import encode_text_trimmed, pooled_length


def test_trimmed_equals_full_context():
    model = randomize(load_model("tiny-test", bands="msclip"), seed=7).eval()
    tokens = model.tokenize(["a satellite image of Forest.", "an aerial photo of a large industrial area near a river"])
    n = pooled_length(model.clip, tokens)
    assert 5 < n < tokens.shape[1]  # the longest prompt's EOT, well inside the 77-token context
    with torch.inference_mode():
        full = model.encode_text(tokens, normalize=True)
        trimmed = encode_text_trimmed(model, tokens)
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-5)
