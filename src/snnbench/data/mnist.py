"""MNIST from the original IDX files (gzip), verified by the MD5 of their uncompressed content (mirrors
re-wrap the same bytes in different gzip headers)."""

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snnbench.data.download import data_root, download, file_digest, missing_file_error
from snnbench.errors import ConfigError, DataError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# file name -> MD5 of the uncompressed IDX content
FILES = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, (N, 28, 28)
    labels: np.ndarray  # int64, (N,)
    checksums: dict


def _checksum_problem(path: Path, expected: str) -> str | None:
    try:
        actual = file_digest(path, "md5", opener=gzip.open)
    except (OSError, EOFError) as exc:
        return f"not a readable gzip file ({exc})"
    return None if actual == expected else f"MD5 of content is {actual}, expected {expected}"


def mnist_file(name: str) -> Path:
    """Path of one verified MNIST file, downloaded first when allowed and missing."""
    root, may_download = data_root()
    path = root / "mnist" / name
    if not path.exists():
        if not may_download:
            raise missing_file_error(path, f"MNIST file {name}")
        return download([m + name for m in MIRRORS], path, lambda p: _checksum_problem(p, FILES[name]))
    problem = _checksum_problem(path, FILES[name])
    if problem:
        raise DataError(f"MNIST file {path} is corrupt ({problem}); delete it to download it again, "
                        "or replace it with the canonical file")
    return path


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise DataError(f"{path} is not an IDX file of {ndim} dimensions (magic {magic:#x})")
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str) -> ImageSet:
    """The MNIST ``train`` (60,000) or ``test`` (10,000) split."""
    if split not in SPLITS:
        raise ConfigError(f"unknown MNIST split {split!r}; use one of {sorted(SPLITS)}")
    image_name, label_name = SPLITS[split]
    images = _read_idx(mnist_file(image_name), 3)
    labels = _read_idx(mnist_file(label_name), 1).astype(np.int64)
    return ImageSet(images, labels, {image_name: FILES[image_name], label_name: FILES[label_name]})
