"""Build-once cache for trained models, keyed by a hash of their configuration: the one home
of "train and cache a model".

``cached(kind, config, build)`` returns a folder; ``build(folder)`` fills it the first time
only and returns the training summary, which every kind keeps as ``summary.json`` beside its
``config.json`` (:func:`read_summary`). The folder is built under a temporary name and renamed
into place when complete, so an interrupted build leaves nothing that a later call would
mistake for a finished one (:func:`is_built`). An interrupted training resumes from its
checkpoint (:func:`checkpoint_path`, written by :func:`save_atomic`).
"""

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

import torch

from snnbench.data.download import cache_root
from snnbench.tracking.runs import config_key

SUMMARY = "summary.json"  # what the training reports (accuracies, history, timings)
CONFIG = "config.json"    # what identifies the model; written last


def cache_folder(kind: str, config: dict) -> Path:
    return cache_root() / "models" / kind / config_key(config)


def checkpoint_path(kind: str, config) -> Path:
    """Where an unfinished training of ``config`` keeps its checkpoint."""
    return cache_root() / "checkpoints" / f"{kind}-{config_key(config)}.pt"


def save_atomic(state: dict, path: Path):
    """``torch.save`` that a crash cannot leave half-written."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def is_built(folder: Path) -> bool:
    return (Path(folder) / CONFIG).exists() and (Path(folder) / SUMMARY).exists()


def read_summary(folder: Path) -> dict:
    return json.loads((Path(folder) / SUMMARY).read_text())


def cached(kind: str, config: dict, build: Callable[[Path], dict]) -> Path:
    folder = cache_folder(kind, config)
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        summary = build(tmp)
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1, default=float))
        (tmp / CONFIG).write_text(json.dumps(config, sort_keys=True, indent=1, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def cache_identity() -> str:
    """This process's model cache as ``host:path``: two processes with the same one share it."""
    return f"{socket.gethostname()}:{cache_root().resolve()}"


def pack(folder: Path) -> dict:
    """A finished cache folder as a value that travels to another machine (a unit of work or its
    result): its place under the cache root and its files' bytes."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"place": folder.relative_to(cache_root()).as_posix(), "files": files}


def unpack(packed: dict) -> Path:
    """The packed folder in this machine's cache (written, whole or not at all, if missing)."""
    folder = cache_root() / packed["place"]
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, data in packed["files"].items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        shutil.rmtree(folder, ignore_errors=True)  # a partial or outdated folder
        try:
            os.replace(tmp, folder)
        except OSError:  # another process unpacked it first
            if not is_built(folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
