"""Session-wide test settings: caches (text embeddings, int8 trunks, the extracted EuroSAT subset) go to a
temporary folder, so tests neither read nor fill the user's ~/.cache/spectraclip."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("SPECTRACLIP_CACHE")
    os.environ["SPECTRACLIP_CACHE"] = str(tmp_path_factory.mktemp("spectraclip-cache"))
    yield
    if old is None:
        os.environ.pop("SPECTRACLIP_CACHE", None)
    else:
        os.environ["SPECTRACLIP_CACHE"] = old
