"""Where datasets live and how they are fetched.

``SNNBENCH_DATA`` names a folder that holds the data (``mnist/``, ``fsdd/recordings/``), read and
never written. Without it, files are downloaded into ``data/`` of the cache folder (``SNNBENCH_CACHE``,
default ``~/.cache/snnbench``), each renamed into place only once its checksum matches.
"""

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from snnbench.errors import DataError

DATA_ENV = "SNNBENCH_DATA"
CACHE_ENV = "SNNBENCH_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "snnbench")


def data_root() -> tuple[Path, bool]:
    """The data folder, and whether missing files may be downloaded into it."""
    local = os.environ.get(DATA_ENV)
    if local:
        return Path(local).expanduser(), False
    return cache_root() / "data", True


def file_digest(path: Path, algorithm: str = "md5", opener=open) -> str:
    digest = hashlib.new(algorithm)
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(urls: list[str], dest: Path, check) -> Path:
    """Fetch the first of ``urls`` that answers and passes ``check(path)`` into ``dest``, atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, out)
            problem = check(tmp)
            if problem is None:
                os.replace(tmp, dest)
                return dest
            failures.append(f"{url}: {problem}")
        except OSError as exc:  # URLError, HTTPError and socket errors are OSErrors
            failures.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {dest.name} ({'; '.join(failures)}); "
                    f"copy the file into {dest.parent} or set {DATA_ENV} to a folder that has it")


def missing_file_error(path: Path, what: str) -> DataError:
    return DataError(f"{what} not found at {path}; set {DATA_ENV} to a folder holding it "
                     f"(see README 'Data') or unset {DATA_ENV} to download it")
