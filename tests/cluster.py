"""A real Dask cluster on the loopback address for tests: a scheduler and worker processes
(``dask scheduler`` / ``dask worker``, no nanny, so that a killed worker stays dead)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class LoopbackCluster:
    def __init__(self, folder: Path, workers: int = 2, env: dict | None = None):
        self.folder = folder
        paths = [str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **(env or {})}
        scheduler_file = folder / "scheduler.json"
        self.scheduler = self._start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--no-dashboard", "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, "the scheduler did not start"
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [self._start("distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-nanny",
                                    "--no-dashboard", "--name", f"worker-{i}") for i in range(workers)]
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)

    def _start(self, module: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{module.rsplit('_', 1)[-1]}-{time.monotonic_ns()}.log", "w")
        return subprocess.Popen([sys.executable, "-m", module, *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.folder)

    def close(self):
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 5  # the processes' graceful exit, together; then they are killed
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
