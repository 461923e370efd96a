"""The keras alias lets nengo-dl 3.6 simulate on TF 2.15, matching nengo's reference simulator;
its start-up noise stays quiet unless asked for."""

import os
import subprocess
import sys

import numpy as np

from snnbench.conversion.nengo_compat import import_nengo_dl


def test_nengo_dl_runs_and_matches_reference_simulator():
    nengo_dl = import_nengo_dl()
    import nengo

    with nengo.Network(seed=0) as net:
        stim = nengo.Node([0.5, -0.25, 1.0])
        ens = nengo.Ensemble(8, 1, neuron_type=nengo.RectifiedLinear(), gain=np.ones(8), bias=np.zeros(8))
        nengo.Connection(stim, ens.neurons, transform=np.random.default_rng(0).normal(size=(8, 3)))
        probe = nengo.Probe(ens.neurons)
    with nengo_dl.Simulator(net, progress_bar=False) as sim_dl:
        sim_dl.run_steps(5)
    with nengo.Simulator(net, progress_bar=False) as sim_ref:
        sim_ref.run_steps(5)
    assert sim_dl.data[probe].shape == (5, 8)
    assert np.abs(sim_dl.data[probe]).sum() > 0
    np.testing.assert_allclose(sim_dl.data[probe], sim_ref.data[probe], atol=1e-4)


QUIET_PROBE = """
import os, sys
from snnbench.cli.main import configure_output
configure_output(verbose=sys.argv[1] == "verbose")
import mlflow
mlflow.set_tracking_uri(sys.argv[2])
mlflow.set_experiment("quiet")  # a new store: MLflow creates its tables
from snnbench.conversion.nengo_compat import import_nengo_dl
nengo_dl = import_nengo_dl()
import nengo
with nengo.Network() as net:
    nengo.Ensemble(4, 1)
with nengo_dl.Simulator(net, progress_bar=False) as sim:
    sim.run_steps(1)
print("simulated; TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""
NOISE = ("Unable to register", "No GPU support detected", "has not been tested", "TF-TRT",
         "Creating initial MLflow database tables")


def test_start_up_is_quiet_by_default_and_verbose_shows_it(tmp_path):
    """TensorFlow's CUDA plug-in / TensorRT messages, nengo-dl's warnings and MLflow's database
    lines are silenced at their source; --verbose (configure_output(verbose=True)) shows them."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "SNNBENCH_VERBOSE", "MLFLOW_LOGGING_LEVEL")}
    probes = {mode: subprocess.Popen([sys.executable, "-c", QUIET_PROBE, mode, f"sqlite:///{tmp_path / mode}.db"],
                                     env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for mode in ("quiet", "verbose")}
    out = {mode: p.communicate(timeout=180) for mode, p in probes.items()}
    assert all(p.returncode == 0 for p in probes.values()), out
    quiet_out, quiet_err = out["quiet"]
    assert "simulated; TF_CPP_MIN_LOG_LEVEL 3" in quiet_out  # kept after nengo_dl's import resets it
    assert not [line for line in quiet_err.splitlines() if any(n in line for n in NOISE)], quiet_err
    verbose_err = out["verbose"][1]
    assert "Creating initial MLflow database tables" in verbose_err
    assert "Unable to register" in verbose_err or "No GPU support detected" in verbose_err, verbose_err
