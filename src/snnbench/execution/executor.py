"""The executor: ``map(fn, units)`` runs every unit once, here or on a Dask cluster, and yields
``(index, result)`` as each unit finishes (in order when in process)."""

import os
from typing import Callable, Iterator, Sequence

from snnbench.errors import ClusterError, ConfigError

CLUSTER_ENV = "SNNBENCH_CLUSTER"
CONNECT_TIMEOUT = "10s"
GPU = "GPU"  # the worker resource GPU units ask for (dask worker --resources GPU=1)


class Executor:
    """Runs units in this process (``client`` None) or through a ``distributed.Client``. As a
    context manager it closes what it started (the client, a local cluster)."""

    def __init__(self, client=None, cluster=None):
        self.client, self.cluster = client, cluster

    @property
    def address(self) -> str | None:
        return self.client.scheduler.address if self.client is not None else None

    def __repr__(self):
        return f"Executor({self.address or 'in process'})"

    # ----------------------------------------------------------------------- starting
    @classmethod
    def connect(cls, address: str) -> "Executor":
        """A client of the running scheduler at ``address``; one line naming it if it cannot be reached."""
        import dask
        from distributed import Client

        from snnbench.execution.security import cluster_security

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
            worker = lambda index: {"cls": Nanny, "options": {  # noqa: E731
                "nthreads": 1, "host": "127.0.0.1", "resources": {GPU: 1},
                "env": {"CUDA_VISIBLE_DEVICES": str(index)}}}
            cluster = SpecCluster(workers={f"gpu-{i}": worker(i) for i in gpus},
                                  scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1",
                                                                           "dashboard_address": dashboard}})
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=dashboard)
        return cls(Client(cluster), cluster)

    def close(self):
        for part in (self.client, self.cluster):
            if part is not None:
                part.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ----------------------------------------------------------------------- running
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

    def map(self, fn: Callable, units: Sequence, gpu: bool = False) -> Iterator[tuple[int, object]]:
        """``(index, fn(units[index]))`` for every unit, each as soon as it is done. A unit's error
        is raised here; the units not yet done are then cancelled."""
        units = list(units)
        if self.client is None:
            for index, unit in enumerate(units):
                yield index, fn(unit)
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


def in_process() -> Executor:
    return Executor()


def _address(text: str) -> str | None:
    return text.strip() or None  # empty (what MLflow passes for an unset parameter): not given


def _workers(text: str) -> int | None:
    import argparse

    if not text.strip():
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes >= 1, got {text!r}")
    return int(text)


def add_cluster_arguments(parser):
    group = parser.add_argument_group("where the work runs (default: this process)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--cluster", type=_address, default=None, metavar="ADDRESS",
                       help=f"a Dask scheduler, tcp://HOST:8786 or tls://HOST:8786 (default: ${CLUSTER_ENV}); "
                            "its workers compute, this process records the runs")
    where.add_argument("--workers", type=_workers, default=None, metavar="N",
                       help="start a local cluster of N worker processes (loopback only) for this run")


def executor_from_args(args, gpus: Sequence[int] = ()) -> Executor:
    """The executor the options ask for: ``--cluster`` (else ``SNNBENCH_CLUSTER``), ``--workers N``,
    or this process. ``gpus``: local GPU workers, one per device, when ``--workers`` is not given."""
    address = getattr(args, "cluster", None) or (None if getattr(args, "workers", None) else os.environ.get(CLUSTER_ENV))
    if address:
        return Executor.connect(address)
    if getattr(args, "workers", None) is not None:
        return Executor.local(args.workers)
    if len(gpus) > 1:
        return Executor.local(len(gpus), gpus)
    return Executor()
