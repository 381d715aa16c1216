"""Every error class spectraclip defines derives from `SpectraclipError`; input-item problems from `InputError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import spectraclip
from spectraclip.errors import CheckpointError, InputError, ManifestError, SpectraclipError

# Keep this list exact (it is empty now): the test fails when an entry is fixed or gone.
_NOT_YET: set[str] = set()


def _error_classes() -> dict[str, type[BaseException]]:
    """Every Exception subclass defined (not just imported) in a spectraclip module."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(spectraclip.__path__, prefix="spectraclip."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


@pytest.fixture(scope="module")
def error_classes() -> dict[str, type[BaseException]]:
    return _error_classes()


def test_every_error_class_derives_from_spectraclip_error(error_classes):
    assert len(error_classes) > 30  # the walk really imported the package
    outside = {name for name, cls in error_classes.items() if not issubclass(cls, SpectraclipError)}
    assert outside - _NOT_YET == set(), "error classes not under SpectraclipError"
    assert _NOT_YET - outside == set(), "fixed or removed: take them off _NOT_YET"


def test_one_manifest_error_and_one_checkpoint_error(error_classes):
    names = [name.rsplit(".", 1)[1] for name in error_classes]
    assert names.count("ManifestError") == 1 and names.count("CheckpointError") == 1
    from spectraclip.captioning import job
    from spectraclip.data import captions
    from spectraclip.models import checkpoints
    from spectraclip.train.checkpoint import TrainingCheckpointError

    assert job.ManifestError is captions.ManifestError is ManifestError
    assert checkpoints.CheckpointError is CheckpointError
    assert issubclass(TrainingCheckpointError, CheckpointError)


def test_input_errors_are_the_per_item_problems():
    from spectraclip.bands import BandError, MissingBandError, UnknownBandError
    from spectraclip.io.errors import BandOrderError, CorruptRasterError, InvalidPixelsError, NoRastersError
    from spectraclip.io.sample import RasterError

    for cls in (RasterError, CorruptRasterError, BandOrderError, InvalidPixelsError, NoRastersError,
                BandError, UnknownBandError, MissingBandError):
        assert issubclass(cls, InputError), cls
    from spectraclip.models.checkpoints import ModelNotAvailableError
    from spectraclip.train.config import RecipeError

    for cls in (ManifestError, CheckpointError, RecipeError, ModelNotAvailableError):
        assert not issubclass(cls, InputError), cls  # a whole-run problem: stops the job


def test_builtin_bases_are_kept():
    """Code and tests that catch ValueError / RuntimeError / FileNotFoundError keep working."""
    from spectraclip.bands import UnknownBandError
    from spectraclip.data.errors import DatasetNotFoundError
    from spectraclip.models.registry import UnknownModelError
    from spectraclip.train.checkpoint import TrainingCheckpointError

    with pytest.raises(ValueError, match="B99"):
        raise UnknownBandError("unknown band B99")
    with pytest.raises(FileNotFoundError, match="eurosat-ms not found at /nowhere"):
        raise DatasetNotFoundError("eurosat-ms", "/nowhere", "a folder")
    with pytest.raises(LookupError):
        raise UnknownModelError("no-such-model")
    err = TrainingCheckpointError("run/step-00000001.pt", "cannot read checkpoint (truncated)")
    assert isinstance(err, RuntimeError) and isinstance(err, ValueError)
    assert str(err) == "run/step-00000001.pt: cannot read checkpoint (truncated)"
    assert str(UnknownModelError("no-such-model")) == "no-such-model"  # no repr() quotes
