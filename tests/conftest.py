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


@pytest.fixture(scope="session")
def tiny_model():
    """Factory of the registry's tiny test model (32 px, deterministic weights, eval mode), one new model a call:

    `tiny_model(bands="msclip", *, seed=None, name="tiny-test", allow_resize=False)`. `seed` overwrites every
    parameter with seeded noise (`fixtures_models.randomize`), so zero-initialised tensors are not special;
    `allow_resize` lets the 32-px model take the 224-px example tiles. Test modules wrap it in their own
    `model` fixture with the scope they need."""

    def make(bands: str = "msclip", *, seed: int | None = None, name: str = "tiny-test",
             allow_resize: bool = False):
        from fixtures_models import randomize, tiny  # torch and the model code: only for tests that use a model

        model = tiny(bands, name=name)
        if seed is not None:
            model = randomize(model, seed=seed)
        if allow_resize:
            model.set_input_options(allow_resize=True)
        return model.eval()

    return make


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for this session (`fixtures_postgres.PostgresServer`: `create_database()` gives a
    fresh database's URL); the tests that use it skip, with the reason, where none can be started."""
    from fixtures_postgres import start_or_skip

    server = start_or_skip()
    yield server
    server.stop()
