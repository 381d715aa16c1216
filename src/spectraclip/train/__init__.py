"""Contrastive (continual) pre-training of SpectralCLIP models: recipe, loop, optimiser, distributed setup."""

from spectraclip.train.config import Recipe, RecipeError, load_recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "train"]


def train(*args, **kwargs):
    """Run a training recipe; see `spectraclip.train.loop.train`."""
    from spectraclip.train.loop import train as _train

    return _train(*args, **kwargs)
