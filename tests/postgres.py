"""A throwaway PostgreSQL server for tests: initdb in a temp folder, start on a free local port,
create a database, yield its SQLAlchemy URL, then stop the server and delete everything.

The server runs as the ``postgres`` system user (PostgreSQL refuses to run as root); when the
tests already run as another user, as that user. Skips, saying why, where the binaries are missing
(``apt-get install -y postgresql``).
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], **kwargs):
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


@contextmanager
def postgres_server(database: str = "optuna_test"):
    """Yield ``postgresql+psycopg2://...`` for a fresh database on a fresh local server."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); "
                    "install them with: apt-get install -y postgresql")
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no 'postgres' system user to run the server as")
    else:
        owner = pwd.getpwuid(os.geteuid())
    root = Path(tempfile.mkdtemp(prefix="snnbench-pg-"))
    data, socket_dir = root / "data", root / "run"
    socket_dir.mkdir()
    os.chown(root, owner.pw_uid, owner.pw_gid)
    os.chown(socket_dir, owner.pw_uid, owner.pw_gid)
    port = free_port()
    user = owner.pw_name
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"])
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
              "-o", f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=50",
              "start"])
        try:
            _run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database])
            yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{database}"
        finally:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url
