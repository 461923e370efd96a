"""The studies' training recipes, defined once (every benchmark that trains "the same model" uses
these). The multimodal ``quick`` profile trains 2 epochs on 2,000 samples so that it runs in minutes
on two CPU cores."""

from dataclasses import dataclass

from snnbench.config import non_negative, option, positive
from snnbench.errors import ConfigError

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Recipe:
    """How a classifier trains (Adam, cross-entropy; snnbench.training.loop.fit), the one definition:
    the defaults are the conversion study's."""
    epochs: int = option(3, "training epochs of the DNN (reference: 3)", non_negative)
    lr: float = option(2e-4, "Adam learning rate (reference: 0.0002)", positive(float))
    batch_size: int = option(100, "training batch size", positive(int))
    train_limit: int = option(0, "train the DNN on the first N MNIST training images only, 0 = all 60,000",
                              non_negative)
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0 or self.train_limit < 0:
            raise ConfigError(f"bad training settings {self}: epochs >= 0, batch_size >= 1, lr > 0, "
                              "train_limit >= 0")

    def as_params(self) -> dict:
        """The recipe without its seed (a sweep's models have their own seeds)."""
        return {k: v for k, v in vars(self).items() if k != "seed"}


CONVERSION = Recipe()
SUITE = {"quick": Recipe(epochs=2, lr=1e-3, batch_size=100, train_limit=2000),
         "full": Recipe(epochs=200, lr=1e-3, batch_size=100)}
SUITE_TEST_LIMIT = {"quick": 1000, "full": 0}  # a fixed seeded subset of the test split, 0 = all of it
