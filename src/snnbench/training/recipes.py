"""The studies' training recipes, defined once (every benchmark that trains "the same model" uses these).

* Conversion study: the 784-256-10 MLP on MNIST, Adam lr 2e-4, 3 epochs, batch 100, all 60,000 images.
* Multimodal study: batch 100, 200 epochs on all training samples (Adam, lr 1e-3); the ``quick``
  profile trains 2 epochs on 2,000 samples so that it runs in minutes on two CPU cores.
"""

from dataclasses import dataclass

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Recipe:
    epochs: int
    lr: float
    batch_size: int
    train_limit: int = 0  # training samples used, 0 = all


CONVERSION = Recipe(epochs=3, lr=2e-4, batch_size=100)
SUITE = {"quick": Recipe(epochs=2, lr=1e-3, batch_size=100, train_limit=2000),
         "full": Recipe(epochs=200, lr=1e-3, batch_size=100)}
SUITE_TEST_LIMIT = {"quick": 1000, "full": 0}  # a fixed seeded subset of the test split, 0 = all of it
