"""The keras alias lets nengo-dl 3.6 simulate on TF 2.15, matching nengo's reference simulator."""

import numpy as np

from snnbench.nengo_compat import import_nengo_dl


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
