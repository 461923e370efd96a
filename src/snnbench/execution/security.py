"""TLS for ``tls://`` schedulers: a :class:`distributed.security.Security` from Dask's own
configuration (``distributed.comm.tls.*`` in ``~/.config/dask/*.yaml`` or ``DASK_*`` variables),
overridden by ``SNNBENCH_CLUSTER_TLS_CA_FILE``, ``SNNBENCH_CLUSTER_TLS_CERT`` and
``SNNBENCH_CLUSTER_TLS_KEY`` (PEM files: the certificate authority, this client's certificate and
its key)."""

import os
from pathlib import Path

from snnbench.errors import ConfigError

TLS_ENV = {"tls_ca_file": "SNNBENCH_CLUSTER_TLS_CA_FILE", "tls_client_cert": "SNNBENCH_CLUSTER_TLS_CERT",
           "tls_client_key": "SNNBENCH_CLUSTER_TLS_KEY"}


def cluster_security(address: str):
    """The client's security settings for ``address``: None for ``tcp://`` (Dask's defaults),
    TLS with encryption required for ``tls://``."""
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
