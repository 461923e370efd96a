"""A user's data set as it is stored, read into :class:`RawData` (its splits as stored) for
:mod:`snnbench.data.datasets` to check and flatten. Three layouts:

* a ``.npz`` file with the arrays ``x_train``, ``y_train``, ``x_test`` and ``y_test``, and
  optionally ``x_val`` and ``y_val`` (both or neither) and ``layout`` ('NCHW' or 'NHWC': how 4-D
  samples are stored, when the rule in :mod:`~snnbench.data.datasets` would guess wrong);
* SNN Toolbox's folder: ``x_test.npz``, ``y_test.npz`` and ``x_norm.npz``, one array each (the
  toolbox writes them with ``numpy.savez_compressed``). ``x_norm`` holds the samples the toolbox
  normalises on, without labels: here it is the training split, unlabelled, so it serves
  calibration only; there is no validation split, so a study cannot be tuned on such a folder;
* an image folder: one sub-folder of images per class (the sorted folder names are labels 0, 1,
  ...), or ``train/`` and ``test/`` (and optionally ``val/``) each holding such sub-folders.
  Images (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM) are read with Pillow as 8-bit grey when every
  image is grey, else as RGB (alpha dropped), and resized (bilinear) to the most common size
  or the size asked for. Without ``train/`` and ``test/``, a fixed 20% of the images (the same
  for every seed) is the test split.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnbench.data.download import file_digest
from snnbench.data.fsdd import manifest_digest
from snnbench.data.multimodal import validation_split
from snnbench.errors import ConfigError, DataError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_OPTIONAL = ("x_val", "y_val", "layout")
NPZ_SPLITS = {"train": ("x_train", "y_train"), "validation": ("x_val", "y_val"), "test": ("x_test", "y_test")}
TOOLBOX_FILES = {"test": ("x_test.npz", "y_test.npz"), "train": ("x_norm.npz", None)}
LAYOUTS = ("NCHW", "NHWC")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm")
IMAGE_SPLITS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}
IMAGE_TEST_FRACTION, IMAGE_TEST_SEED = 0.2, 0  # a class-folder layout's test split: fixed, whatever the seed
GREY_BANDS = {"1", "L", "I", "F", "A"}  # Pillow bands of grey images (with or without alpha)
ACCEPTED = ("a .npz file (x_train, y_train, x_test, y_test; optionally x_val, y_val), SNN Toolbox's folder "
            "(x_test.npz, y_test.npz, x_norm.npz) or an image folder (a sub-folder of images per class, or train/ "
            "and test/ holding such sub-folders)")


@dataclass(frozen=True)
class RawData:
    """Splits as stored: samples (N, ...) and labels (integers or one-hot rows; None: unlabelled)."""
    x: dict  # split -> samples
    y: dict  # split -> labels or None
    names: dict  # split -> what the split is called in the source (a key, a file, a folder)
    checksums: dict  # file, relative to the source -> checksum
    layout: str | None = None  # 'NCHW' or 'NHWC' when the source says
    class_names: tuple = field(default=())


def read_layout(path: Path, image_size: tuple[int, int] | None = None) -> RawData:
    """The data set at ``path`` in whichever layout it has (module docstring)."""
    toolbox = path.is_dir() and any((path / name).exists() for pair in TOOLBOX_FILES.values() for name in pair if name)
    if image_size is not None and (toolbox or not path.is_dir()):
        raise ConfigError(f"an image size is for an image folder; {path} holds arrays")
    if path.is_file() and path.suffix == ".npz":
        return read_npz(path)
    if toolbox:
        return read_toolbox_folder(path)
    if path.is_dir():
        return read_image_folder(path, image_size)
    raise DataError(f"{path} is neither of the layouts read: {ACCEPTED}")


def _load_npz(path: Path) -> dict:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataError(f"{path} holds one array (.npy), not named arrays; write it with numpy.savez")
        with loaded as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as exc:  # zipfile.BadZipFile is an OSError; pickled arrays a ValueError
        raise DataError(f"{path} is not a readable .npz file of numeric arrays ({exc}); write it with "
                        "numpy.savez") from None


def read_npz(path: Path) -> RawData:
    arrays = _load_npz(path)
    missing = [k for k in NPZ_KEYS if k not in arrays] + [k for k, other in (("x_val", "y_val"), ("y_val", "x_val"))
                                                          if other in arrays and k not in arrays]
    unknown = sorted(set(arrays) - set(NPZ_KEYS) - set(NPZ_OPTIONAL))
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise DataError(f"{path} has arrays {', '.join(sorted(arrays)) or 'none'} ({'; '.join(problems)}); a .npz "
                        "data set holds x_train, y_train, x_test, y_test and optionally x_val, y_val and layout")
    layout = None
    if "layout" in arrays:
        layout = str(arrays["layout"])
        if layout not in LAYOUTS:
            raise DataError(f"{path}: layout is {layout!r}; give 'NCHW' or 'NHWC'")
    splits = {split: keys for split, keys in NPZ_SPLITS.items() if keys[0] in arrays}
    return RawData({split: arrays[x] for split, (x, _) in splits.items()},
                   {split: arrays[y] for split, (_, y) in splits.items()},
                   {split: x for split, (x, _) in splits.items()},
                   {path.name: file_digest(path, "sha256")}, layout)


def _single_array(path: Path) -> np.ndarray:
    arrays = _load_npz(path)
    if len(arrays) != 1:
        raise DataError(f"{path} holds {len(arrays)} arrays ({', '.join(arrays) or 'none'}); SNN Toolbox's files "
                        "hold one each (numpy.savez_compressed(path, array))")
    return next(iter(arrays.values()))


def read_toolbox_folder(folder: Path) -> RawData:
    files = [name for pair in TOOLBOX_FILES.values() for name in pair if name]
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} is an SNN Toolbox folder without {', '.join(missing)}; it needs "
                        f"{', '.join(files)}")
    x = {split: _single_array(folder / x_name) for split, (x_name, _) in TOOLBOX_FILES.items()}
    y = {split: _single_array(folder / y_name) if y_name else None for split, (_, y_name) in TOOLBOX_FILES.items()}
    return RawData(x, y, {split: x_name for split, (x_name, _) in TOOLBOX_FILES.items()},
                   {name: file_digest(folder / name, "sha256") for name in files})


def _visible_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _split_folders(folder: Path) -> dict[str, Path]:
    """split -> its folder (train/, test/, val/), or {} for a folder of class folders."""
    names = {p.name: p for p in _visible_folders(folder)}
    if not {"train", "test"} <= set(names):
        return {}
    splits = {split: names[n] for split, choices in IMAGE_SPLITS.items() for n in choices if n in names}
    others = sorted(set(names) - {p.name for p in splits.values()})
    if others or len(splits) != len([n for choices in IMAGE_SPLITS.values() for n in choices if n in names]):
        raise DataError(f"{folder} has train/ and test/ beside {', '.join(others) or 'both val/ and validation/'}; "
                        "keep train/, test/ and optionally val/, each with a sub-folder of images per class")
    return splits


def _class_files(folder: Path, classes: list[str], training: bool) -> list[tuple[Path, int]]:
    """(image file, label) in each class sub-folder, labelled by the training split's ``classes``;
    in the training split every class folder must hold images."""
    found = [p.name for p in _visible_folders(folder)]
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{folder} has classes {', '.join(unknown)} that the training split lacks; give every "
                        "split the training split's class folders")
    files = []
    for name in found:
        images = _image_files(folder / name)
        if training and not images:
            raise DataError(f"class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                            "add images or remove the folder")
        files += [(path, classes.index(name)) for path in images]
    return files


def read_image_folder(folder: Path, image_size: tuple[int, int] | None) -> RawData:
    from PIL import Image, UnidentifiedImageError

    split_folders = _split_folders(folder)
    class_root = split_folders.get("train", folder)
    classes = [p.name for p in _visible_folders(class_root)]
    if not classes or not any(_image_files(class_root / name) for name in classes):
        raise DataError(f"{folder} is neither of the layouts read: {ACCEPTED}")
    files = {split: _class_files(path, classes, split == "train")
             for split, path in (split_folders or {"train": folder}).items()}
    images = {}
    for split, entries in files.items():
        images[split] = []
        for path, _ in entries:
            try:
                with Image.open(path) as image:
                    image.load()
                    images[split].append(image.copy())
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"image {path} cannot be read ({exc}); replace or remove it") from None
    every = [image for split_images in images.values() for image in split_images]
    mode = "L" if all(set(image.getbands()) <= GREY_BANDS for image in every) else "RGB"
    width, height = (image_size[1], image_size[0]) if image_size else \
        Counter(image.size for image in every).most_common(1)[0][0]
    x, y = {}, {}
    for split, entries in files.items():
        pixels = np.stack([np.asarray(_sized(image.convert(mode), width, height)) for image in images[split]]) \
            if entries else np.zeros((0, height, width) + ((3,) if mode == "RGB" else ()), np.uint8)
        x[split] = pixels[:, None] if mode == "L" else pixels.transpose(0, 3, 1, 2)  # (N, C, H, W)
        y[split] = np.array([label for _, label in entries], dtype=np.int64)
    if not split_folders:  # a fixed test split, the same for every seed
        rest, test = validation_split(len(y["train"]), IMAGE_TEST_FRACTION, IMAGE_TEST_SEED)
        x, y = ({"train": a["train"][rest], "test": a["train"][test]} for a in (x, y))
    relative = [str(path.relative_to(folder).as_posix()) for entries in files.values() for path, _ in entries]
    names = {split: f"{path.name}/" for split, path in split_folders.items()} or \
        {"train": "the images outside the test split", "test": "the test split's images"}
    return RawData(x, y, names, {"images": manifest_digest(folder, relative)}, "NCHW", tuple(classes))


def _sized(image, width: int, height: int):
    from PIL import Image
    return image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BILINEAR)
