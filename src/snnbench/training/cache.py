"""Build-once cache of trained models, keyed by a hash of their configuration.

``cached(kind, config, build)`` returns a folder that ``build(folder)`` fills the first time only;
its returned training summary is kept as ``summary.json`` beside ``config.json``. Folders are built
under a temporary name and renamed into place, so an interrupted build leaves nothing that looks
finished (:func:`is_built`); an interrupted training resumes from its :func:`checkpoint_path`.
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


def _publish(folder: Path, fill: Callable[[Path], None]) -> Path:
    """``folder``, unless built already, filled by ``fill`` in a temporary folder renamed into place."""
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        fill(tmp)
        shutil.rmtree(folder, ignore_errors=True)  # a partial or outdated folder
        try:
            os.replace(tmp, folder)
        except OSError:  # another process built it first
            if not is_built(folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def cached(kind: str, config: dict, build: Callable[[Path], dict]) -> Path:
    def fill(tmp: Path):
        summary = build(tmp)
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1, default=float))
        (tmp / CONFIG).write_text(json.dumps(config, sort_keys=True, indent=1, default=str))

    return _publish(cache_folder(kind, config), fill)


def cache_identity() -> str:
    """This process's model cache as ``host:path``: two processes with the same one share it."""
    return f"{socket.gethostname()}:{cache_root().resolve()}"


def pack(folder: Path) -> dict:
    """A finished cache folder as a value that travels to another machine: its place under the
    cache root and its files' bytes."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"place": folder.relative_to(cache_root()).as_posix(), "files": files}


def unpack(packed: dict) -> Path:
    """The packed folder in this machine's cache (written, whole or not at all, if missing)."""
    def fill(tmp: Path):
        for name, data in packed["files"].items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)

    return _publish(cache_root() / packed["place"], fill)
