"""Where a benchmark's units of work run: in this process (the default), or on a Dask cluster.

A unit, one call ``fn(unit)`` of a module-level function on a picklable value, returns its result
rows and logs nothing: the driver (the process the user started) records them in MLflow, so workers
need no access to the tracking store. A worker lost mid-unit is Dask's business: its units run again.

* ``--cluster tcp://HOST:8786`` or ``tls://`` (else ``SNNBENCH_CLUSTER``): a running scheduler; TLS
  from Dask's configuration (``distributed.comm.tls.*``), overridden by ``SNNBENCH_CLUSTER_TLS_CA_FILE``,
  ``_CERT`` and ``_KEY`` (PEM files: the certificate authority, this client's certificate and key).
* ``--workers N``: a local cluster of N worker processes, bound to the loopback address.
* GPU units ask for the ``GPU`` resource: only workers started with ``--resources GPU=1`` (one per
  GPU, as ``dask cuda worker`` does) take them.
"""

import argparse
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from snnbench.config import option
from snnbench.errors import ClusterError, ConfigError

CLUSTER_ENV = "SNNBENCH_CLUSTER"
TLS_ENV = {"tls_ca_file": "SNNBENCH_CLUSTER_TLS_CA_FILE", "tls_client_cert": "SNNBENCH_CLUSTER_TLS_CERT",
           "tls_client_key": "SNNBENCH_CLUSTER_TLS_KEY"}
CONNECT_TIMEOUT = "10s"
GPU = "GPU"  # the worker resource GPU units ask for (dask worker --resources GPU=1)


def cluster_security(address: str):
    """The client's security settings: None for ``tcp://`` (Dask's defaults), TLS with encryption
    required for ``tls://``."""
    if not address.startswith("tls://"):
        return None
    from distributed.security import Security

    files = {field: os.environ[name] for field, name in TLS_ENV.items() if os.environ.get(name)}
    for field, path in files.items():
        if not Path(path).is_file():
            raise ConfigError(f"{TLS_ENV[field]}={path!r}: no such file; give the PEM file's path")
    security = Security(require_encryption=True, **files)
    if not security.tls_ca_file or not security.tls_client_cert:
        raise ConfigError(f"{address} is a TLS address: set SNNBENCH_CLUSTER_TLS_CA_FILE, "
                          "SNNBENCH_CLUSTER_TLS_CERT and SNNBENCH_CLUSTER_TLS_KEY (PEM files), or "
                          "distributed.comm.tls.* in Dask's configuration")
    return security


class Executor(AbstractContextManager):
    """Runs units in this process (``client`` None) or through a ``distributed.Client``. As a
    context manager it closes what it started (the client, a local cluster)."""

    def __init__(self, client=None, cluster=None):
        self.client, self.cluster = client, cluster

    @property
    def address(self) -> str | None:
        return self.client.scheduler.address if self.client is not None else None

    def __repr__(self):
        return f"Executor({self.address or 'in process'})"

    @classmethod
    def connect(cls, address: str) -> "Executor":
        """A client of the running scheduler at ``address``; one line naming it if it cannot be reached."""
        import dask
        from distributed import Client

        if "://" not in address:
            raise ConfigError(f"--cluster {address!r}: give the scheduler's address as tcp://HOST:8786 "
                              "or tls://HOST:8786")
        security = cluster_security(address)
        try:
            with dask.config.set({"distributed.comm.timeouts.connect": CONNECT_TIMEOUT}):
                client = Client(address, security=security, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot reach the Dask scheduler at {address} ({reason}); start it with "
                               f"`dask scheduler`, or fix --cluster / {CLUSTER_ENV}") from None
        return cls(client)

    @classmethod
    def local(cls, workers: int, gpus: Sequence[int] = ()) -> "Executor":
        """A cluster of ``workers`` processes on this machine, bound to the loopback address (a Dask
        worker runs any code sent to it). With ``gpus`` (CUDA device indices): one worker per GPU,
        each seeing only its own device and offering the GPU resource."""
        from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        dashboard = "127.0.0.1:0"  # the Dask dashboard (bokeh) on a free loopback port
        if gpus:
            specs = {f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "resources": {GPU: 1},
                                                            "env": {"CUDA_VISIBLE_DEVICES": str(i)}}} for i in gpus}
            cluster = SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {
                "host": "127.0.0.1", "dashboard_address": dashboard}})
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=dashboard)
        return cls(Client(cluster), cluster)

    def close(self):
        for part in (self.client, self.cluster):
            if part is not None:
                part.close()

    def __exit__(self, *exc):
        self.close()

    def workers(self, gpu: bool = False) -> int:
        """Workers that can take a unit (GPU units: workers offering the GPU resource); 1 in process."""
        if self.client is None:
            return 1
        workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
        return sum(1 for w in workers if not gpu or w.get("resources", {}).get(GPU, 0) >= 1)

    def on_workers(self, fn: Callable):
        """Run ``fn()`` once on every worker of the cluster (set-up: not a unit of work); in process, here."""
        if self.client is None:
            fn()
        else:
            self.client.run(fn)

    def map(self, fn: Callable, units: Sequence, gpu: bool = False,
            overlap: bool = False) -> Iterator[tuple[int, object]]:
        """``(index, fn(units[index]))`` for every unit as soon as it is done (in order in process). A
        unit's error is raised here, and the units not yet done are cancelled. ``overlap`` (in process): the
        next unit runs in a thread of its own, one at a time, while the caller handles a result (logs it)."""
        units = list(units)
        if self.client is None:
            yield from (_overlapped(fn, units) if overlap else enumerate(map(fn, units)))
            return
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        if gpu and units and not self.workers(gpu=True):
            raise ClusterError(f"no worker of the cluster at {self.address} offers a GPU: start one per GPU "
                               f"with `dask worker {self.address} --nthreads 1 --resources GPU=1` "
                               "(or `dask cuda worker`)")
        futures = self.client.map(fn, units, pure=False, resources={GPU: 1} if gpu else None)
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in as_completed(futures):
                try:
                    yield index[future.key], future.result()
                except KilledWorker as exc:
                    raise ClusterError(f"a unit of work ({fn.__name__}) was running on every worker that died "
                                       f"({exc}); see the workers' logs") from None
        finally:
            self.client.cancel([f for f in futures if not f.done()])


def _overlapped(fn: Callable, units: list) -> Iterator[tuple[int, object]]:
    """``(index, fn(unit))`` in order, ``fn`` of the next unit running in one worker thread while the
    caller handles the last result (numpy, torch and TensorFlow release the interpreter while they compute)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snnbench-unit") as pool:
        pending = [pool.submit(fn, unit) for unit in units[:1]]
        for index in range(len(units)):
            result = pending.pop().result()
            if index + 1 < len(units):
                pending.append(pool.submit(fn, units[index + 1]))
            yield index, result


def _address(text: str) -> str | None:
    return text.strip() or None  # empty (what MLflow passes for an unset parameter): not given


def _workers(text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes >= 1, got {text!r}")
    return int(text)


WHERE = "where the work runs (default: this process)"


@dataclass(frozen=True)
class Cluster:
    """Where a command's units run: a Dask cluster, a local one, or (neither given) this process."""
    cluster: str | None = option(None, f"a Dask scheduler, tcp://HOST:8786 or tls://HOST:8786 (default: ${CLUSTER_ENV}); "
                                       "its workers compute, this process records the runs", _address, group=WHERE,
                                 exclusive="where", metavar="ADDRESS")
    workers: int | None = option(None, "start a local cluster of N worker processes (loopback only) for this run",
                                 _workers, group=WHERE, exclusive="where", metavar="N")


def executor_for(options: Cluster, gpus: Sequence[int] = ()) -> Executor:
    """The executor a command's options (those of :class:`Cluster`) ask for: ``--cluster`` (else
    ``SNNBENCH_CLUSTER``), ``--workers N``, or this process. ``gpus``: local GPU workers, one per
    device, when ``--workers`` is not given."""
    workers = options.workers
    address = options.cluster or (None if workers else os.environ.get(CLUSTER_ENV))
    if address:
        return Executor.connect(address)
    if workers is not None:
        return Executor.local(workers)
    if len(gpus) > 1:
        return Executor.local(len(gpus), gpus)
    return Executor()
