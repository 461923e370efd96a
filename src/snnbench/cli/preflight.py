"""Every input of a command checked before any work, so bad input costs one line and leaves no run:
the tracking store is opened, every file or folder the command will write can be written, and every
data file its run reads is verified by its checksum (or fetched, where downloads are allowed).

An option names where a command writes when it ends in ``_out`` (a file; its folder is made if
missing) or is ``out_dir`` (a folder, made if missing)."""

import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from snnbench.benchmarks import BENCHMARKS
from snnbench.errors import ConfigError
from snnbench.tracking.runs import check_store

OUTPUT_FOLDERS = ("out_dir",)
STORE_COMMANDS = (*BENCHMARKS, "reproduce")  # those that write runs to the tracking store


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _writable_problem(path: Path, folder: bool) -> str | None:
    """Why ``path`` (a file, or a folder) cannot be written, or None: a file must not be a folder,
    and the nearest existing folder at or above where it goes must take a new file (tried)."""
    if not folder and path.is_dir():
        return "is a folder; give a file name"
    start = path if folder else path.parent
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        descriptor, probe = tempfile.mkstemp(dir=existing, prefix=".snnbench-write-check-")
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror or exc})"
    os.close(descriptor)
    os.unlink(probe)
    return None


def check_outputs(options) -> None:
    """Every output path option given can be written (:class:`ConfigError` in one line if not)."""
    for dest, value in asdict(options).items():
        if not value or not (dest.endswith("_out") or dest in OUTPUT_FOLDERS):
            continue
        problem = _writable_problem(Path(value).expanduser(), folder=dest in OUTPUT_FOLDERS)
        if problem:
            raise ConfigError(f"{_option(dest)} {value}: {problem}; give a path that can be written")


def modalities_read(options) -> list:
    """The data a benchmark's run reads: its ``--dataset``'s, else its ``--modalities``, else MNIST
    (the conversion benchmarks)."""
    dataset = getattr(options, "dataset", "")
    if dataset:
        from snnbench.data import BUILT_IN, load_dataset

        if dataset not in BUILT_IN:
            load_dataset(dataset, getattr(options, "seed", 0))  # a user's data, read and checked whole
            return []
        return [BUILT_IN[dataset]]
    return list(getattr(options, "modalities", None) or ["image"])


def check_data(modalities) -> None:
    """Every file the modalities read, verified: MNIST's four files by their checksums, FSDD's
    recordings by their manifest (loading the test split checks every recording first)."""
    from snnbench.data import load_fsdd, mnist

    if {"image", "multimodal"} & set(modalities):
        for name in mnist.FILES:
            mnist.mnist_file(name)
    if {"audio", "multimodal"} & set(modalities):
        load_fsdd("test")


def check_inputs(command: str, options) -> None:
    """A command's inputs, checked in the order they are cheap: outputs, the store, the data."""
    check_outputs(options)
    if command in STORE_COMMANDS:
        check_store()
    if command in BENCHMARKS and command != "tune":  # tune reads its test split only after the choice
        check_data(modalities_read(options))
