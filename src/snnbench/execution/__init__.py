"""Where a benchmark's units of work run: in this process (the default), or on a Dask cluster.

A unit is one call ``fn(unit)`` of a module-level function on a picklable value (a noise-sweep
subject, a multimodal configuration, a share of the grid's stacks, a worker of an Optuna study);
it returns its result rows and logs nothing: the driver (the process the user started) records
them in MLflow, so workers need no access to the tracking store.

* ``--cluster tcp://HOST:8786`` (or ``tls://``; else ``SNNBENCH_CLUSTER``): a running
  ``dask.distributed`` scheduler; TLS settings from Dask's configuration files or
  ``SNNBENCH_CLUSTER_TLS_*`` (:mod:`snnbench.execution.security`).
* ``--workers N``: a local cluster of N worker processes, bound to the loopback address.
* GPU units ask for the ``GPU`` resource: only workers started with ``--resources GPU=1`` (one
  per GPU, as ``dask cuda worker`` does) take them.

A worker lost mid-unit is the engine's business: its units run again on another worker.
"""

from snnbench.execution.executor import (CLUSTER_ENV, Executor, add_cluster_arguments, executor_from_args,
                                         in_process)
from snnbench.execution.masking import mask_credentials

__all__ = ["CLUSTER_ENV", "Executor", "add_cluster_arguments", "executor_from_args", "in_process",
           "mask_credentials"]
