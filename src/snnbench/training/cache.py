"""Build-once cache for trained models, keyed by a hash of their configuration.

``cached(kind, config, build)`` returns a folder; ``build(folder)`` fills it the first time only.
The folder is built under a temporary name and renamed into place when complete, so an
interrupted build leaves nothing that a later call would mistake for a finished one.
"""

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

from snnbench.data.download import cache_root
from snnbench.tracking.runs import config_key


def cache_folder(kind: str, config: dict) -> Path:
    return cache_root() / "models" / kind / config_key(config)


def cached(kind: str, config: dict, build: Callable[[Path], None]) -> Path:
    folder = cache_folder(kind, config)
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        build(tmp)
        (tmp / "config.json").write_text(json.dumps(config, sort_keys=True, indent=1, default=str))
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
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, data in packed["files"].items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        shutil.rmtree(folder, ignore_errors=True)  # a partial folder (no config.json)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process unpacked it first
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
