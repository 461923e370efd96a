"""The converted SNN on nengo-loihi's Loihi emulator (engine loihi-emulator) and through convert."""

import numpy as np
import pytest

from conftest import calibrated_reference_mlp, require_data
from snnbench.cli.main import main
from snnbench.conversion.nengo_net import LayerParams, SimConfig
from snnbench.errors import SnnbenchError


def test_pooling_folds_into_the_next_op_exactly():
    from snnbench.conversion import loihi
    from snnbench.conversion.onnx_ops import extract
    from snnbench.models.conversion import small_cnn
    from snnbench.models.export import export_onnx
    import tempfile, torch  # noqa: E401

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = extract(export_onnx(small_cnn(), 784, f"{tmp}/cnn.onnx"))
    folded = loihi.fold_pooling(model)
    assert not [op for op in folded.linear_ops() if op.kind == "avgpool"]
    x = np.random.default_rng(0).random((20, 784))
    np.testing.assert_allclose(folded.forward(x), model.forward(x), atol=1e-9)
    shifted = loihi.with_input_layer(folded)  # pixels >= 0: the identity ReLU layer changes nothing
    np.testing.assert_allclose(shifted.forward(x), model.forward(x), atol=1e-9)


def test_clip_bounds_survive_the_loihi_restaging():
    """A Clip layer's bound stays on its stage through pooling folds and the added input layer."""
    from dataclasses import replace
    from snnbench.conversion import loihi
    from snnbench.conversion.onnx_ops import extract
    from snnbench.models.conversion import small_cnn
    from snnbench.models.export import export_onnx
    import tempfile, torch  # noqa: E401

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = extract(export_onnx(small_cnn(), 784, f"{tmp}/cnn.onnx"))
    bounded = replace(model, stages=[replace(s, upper=0.05) if s.activation else s for s in model.stages])
    staged = loihi.with_input_layer(loihi.fold_pooling(bounded))
    assert [s.upper for s in staged.stages[1:]] == [s.upper for s in bounded.stages]
    x = np.random.default_rng(0).random((20, 784))
    assert not np.allclose(bounded.forward(x), model.forward(x))  # the bound matters on these inputs
    np.testing.assert_allclose(staged.forward(x), bounded.forward(x), atol=1e-9)


@pytest.fixture(scope="module")
def calibrated_mlp():
    return calibrated_reference_mlp(train_limit=10000)


def test_each_sample_starts_from_a_fresh_chip(calibrated_mlp):
    """Resetting the state in place gives what a newly built emulator gives."""
    from snnbench.data import load_features
    from snnbench.engines.loihi import LoihiModel

    model, layers = calibrated_mlp
    x = load_features("image", "test").x[:6]
    together = LoihiModel(model, layers, SimConfig(steps=6)).predict(x)
    alone = np.concatenate([LoihiModel(model, layers, SimConfig(steps=6)).predict(x[i: i + 1]) for i in (3, 5)])
    np.testing.assert_allclose(together[[3, 5]], alone)


def test_the_emulator_is_within_two_points_of_nengo_dl(calibrated_mlp):
    from snnbench.data import load_features
    from snnbench.engines.loihi import LoihiModel
    from snnbench.engines.nengo import NengoModel

    model, layers = calibrated_mlp
    test = load_features("image", "test").subset(np.arange(400))
    sim = SimConfig(steps=8)
    chip = LoihiModel(model, layers, sim)
    loihi_accuracy = (chip.predict(test.x).argmax(1) == test.y).mean()
    assert chip.last_activity.macs == 0 and chip.last_activity.acs > 0  # the chip only accumulates spikes
    nengo_accuracy = (NengoModel(model, layers, sim).predict(test.x).argmax(1) == test.y).mean()
    assert abs(loihi_accuracy - nengo_accuracy) <= 0.02, (loihi_accuracy, nengo_accuracy)


def test_what_loihi_cannot_run_fails_in_one_line(calibrated_mlp):
    from snnbench.engines.loihi import LoihiModel
    from snnbench.noise import NoiseSpec

    model, layers = calibrated_mlp
    with pytest.raises(SnnbenchError, match="spiking neurons"):
        LoihiModel(model, [LayerParams("relu-rate")], SimConfig())
    with pytest.raises(SnnbenchError, match="input noise only"):
        LoihiModel(model, layers, SimConfig()).predict(np.zeros((1, 784)), NoiseSpec(0.1, "post"))


@pytest.mark.parametrize("shape", [(784,), (1, 28, 28)])
def test_convert_on_loihi_with_nir_out(tracking_store, tmp_path, shape):
    """The done-when command on a flat and an image-shaped MLP export."""
    require_data()
    import mlflow
    import nir
    import torch
    from mlflow.tracking import MlflowClient

    from snnbench.models.export import export_onnx

    torch.manual_seed(0)
    layers = [torch.nn.Flatten()] if len(shape) > 1 else []
    net = torch.nn.Sequential(*layers, torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    path = export_onnx(net, shape if len(shape) > 1 else 784, tmp_path / "given.onnx")
    argv = ["convert", "--onnx-model", str(path), "--test-limit", "40", "--steps", "6", "--steps-list", "6",
            "--minibatch", "40", "--calibration-samples", "100", "--target", "nengo-loihi",
            "--nir-out", str(tmp_path / "net.nir")]
    assert main(argv) == 0
    (run,) = mlflow.search_runs(experiment_names=["convert"], output_format="list")
    metrics = run.data.metrics
    for key in ("loihi_accuracy", "loihi_accuracy_ci_low", "loihi_energy_loihi_joules_per_sample",
                "snn_energy_loihi_joules_per_sample", "dnn_energy_gpu_joules_per_sample", "loihi_spikes_per_sample"):
        assert key in metrics, key
    assert isinstance(nir.read(str(tmp_path / "net.nir")), nir.NIRGraph)
    names = [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "nir")]
    assert names == ["nir/net.nir"]
