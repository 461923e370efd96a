"""Attacks (snnbench.perturbations.attacks): budgets kept in the data's units, the source DNN's accuracy
lowered, the surrogate swapped for the attacker only, the very same adversarial arrays for every engine of a
model (crafted once, reproducible from the seed), refusals in one line, and the sweep end to end."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import snntorch as snn
import torch
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_digits
from torch import nn

from conftest import require_data
from snnbench import engines, perturbations
from snnbench.benchmarks import noise_sweep_perturbations as perturbed
from snnbench.benchmarks.noise_sweep_models import Subject, SweepSettings
from snnbench.cli.main import main
from snnbench.data import FeatureSet
from snnbench.errors import ConfigError, DataError, UnsupportedModelError
from snnbench.models.export import export_onnx
from snnbench.models.spiking import encode, surrogate_slope
from snnbench.perturbations import Target, attacks

DNN_ATTACKS = [n for n in perturbations.ATTACKS if perturbations.build(n).source == "dnn"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A small MLP trained on scikit-learn's 8x8 digits (pixels scaled to [0, 1]) as an ONNX file, and 200
    held-out samples."""
    data = load_digits()
    x, y = (data.data / 16).astype(np.float32), data.target
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimiser = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(torch.as_tensor(x[:1200])), torch.as_tensor(y[:1200])).backward()
        optimiser.step()
    path = export_onnx(net.eval(), 64, tmp_path_factory.mktemp("digits") / "model.onnx")
    return SimpleNamespace(onnx=path, x=x[1200:1400], y=y[1200:1400])


def _accuracy(onnx_file, x, y) -> float:
    return float((engines.build("ort-dnn", onnx_file, {"activity": False}).predict(x).argmax(1) == y).mean())


@pytest.mark.parametrize("name", DNN_ATTACKS)
def test_an_attack_keeps_its_budget_and_the_pixel_range_and_fools_the_dnn(digits, name):
    family, model = perturbations.build(name), attacks.dnn_module(digits.onnx)
    # the attacked function is the file ONNX Runtime runs
    logits = engines.build("ort-dnn", digits.onnx, {"activity": False}).predict(digits.x)
    np.testing.assert_allclose(model(torch.as_tensor(digits.x)).detach().numpy(), logits, atol=1e-4)
    clean = _accuracy(digits.onnx, digits.x, digits.y)
    level = family.quick[0]
    adversarial = family.craft(model, digits.x, digits.y, level, seed=3)
    delta = (adversarial - digits.x).astype(np.float64)
    size = np.abs(delta).max(axis=1) if family.norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= level + 1e-5 and size.max() > level / 2
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert clean > 0.9 and _accuracy(digits.onnx, adversarial, digits.y) < clean - 0.3
    np.testing.assert_array_equal(family.craft(model, digits.x, digits.y, level, seed=3), adversarial)


def test_an_encoding_in_front_of_the_dnn_is_attacked_with_it(digits):
    def encode(x):  # a user's scale and mean: the file sees 2 x - 1
        return 2 * x - 1

    model = attacks.dnn_module(digits.onnx, encode, 64)
    plain = attacks.dnn_module(digits.onnx)
    x = torch.as_tensor(digits.x[:5])
    torch.testing.assert_close(model(x), plain(2 * x - 1))
    with pytest.raises(UnsupportedModelError, match="not affine"):
        attacks.dnn_module(digits.onnx, np.square, 64)


def test_images_outside_the_pixel_range_are_refused(digits):
    with pytest.raises(DataError, match=r"range over \[0, 16\]; rescale the data set to \[0, 1\]"):
        perturbations.build("fgsm_linf").craft(attacks.dnn_module(digits.onnx), digits.x * 16, digits.y, 0.1, 0)


class _TinySnn(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.linear, self.out = nn.Linear(64, 40), nn.Linear(40, 10)
        self.neuron = snn.Leaky(beta=0.9)

    def forward(self, x):
        mem, total = torch.zeros(len(x), 40), 0
        for _ in range(4):
            spikes, mem = self.neuron(self.linear(x * 3), mem)
            total = total + self.out(spikes)
        return total / 4


def test_the_attacker_swaps_the_surrogate_of_its_own_copy_only(digits):
    net = _TinySnn().eval()
    x = torch.as_tensor(digits.x[:20])
    grads = {}
    for name in ("atan", "fast_sigmoid"):
        attacker = attacks.with_surrogate(net, name)
        torch.testing.assert_close(attacker(x), net(x))  # the same forward pass
        probe = torch.linspace(-1, 1, 9, requires_grad=True)
        attacker.spike_grad(probe).sum().backward()
        torch.testing.assert_close(probe.grad, surrogate_slope(name, probe.detach()))
        inputs = x.clone().requires_grad_(True)
        nn.functional.cross_entropy(attacker(inputs), torch.as_tensor(digits.y[:20])).backward()
        grads[name] = inputs.grad
    assert not torch.allclose(grads["atan"], grads["fast_sigmoid"])
    probe = torch.linspace(-1, 1, 9, requires_grad=True)
    net.neuron.spike_grad(probe).sum().backward()  # the original keeps snntorch's default (atan)
    torch.testing.assert_close(probe.grad, surrogate_slope("atan", probe.detach()))
    with pytest.raises(ConfigError, match="unknown surrogate gradient 'erf'"):
        attacks.with_surrogate(net, "erf")


class _RateSnn(_TinySnn):
    """A rate-encoded SNN: Poisson input spikes drawn afresh at each step."""
    spec = SimpleNamespace(encoding="rate")

    def forward(self, x):
        mem, total = torch.zeros(len(x), 40), 0
        for _ in range(6):
            spikes, mem = self.neuron(self.linear(encode(x, "rate") * 3), mem)
            total = total + self.out(spikes)
        return total / 6


def test_a_rate_encoded_snn_is_attacked_straight_through_its_spikes_over_averaged_draws(digits):
    net = _RateSnn().eval()
    attacker = attacks.with_surrogate(net, "fast_sigmoid")
    assert attacker.draws == attacks.EOT_DRAWS and attacks.with_surrogate(_TinySnn(), "atan").draws == 1
    x = torch.as_tensor(digits.x[:20]).requires_grad_(True)
    attacker(x).logsumexp(1).sum().backward()
    assert x.grad.abs().sum() > 0  # the Bernoulli draws pass the gradient on
    with torch.no_grad():
        torch.manual_seed(5)
        averaged = attacker(x)
        torch.manual_seed(5)
        draws = [net(x) for _ in range(attacks.EOT_DRAWS)]
    torch.testing.assert_close(averaged, sum(draws) / len(draws))


def test_an_attack_the_target_has_no_meaning_for_is_refused_in_one_line():
    image = (1, 28, 28)
    checks = [("pgd_linf", Target("snntorch-snn", image, "image", "user"), "only the suite's multimodal SNN"),
              ("pgd_linf_snn_atan", Target("nengo-snn", image, "image", "multimodal"), "not to engine nengo-snn"),
              ("fgsm_l2_snn_fast_sigmoid", Target("ort-dnn", image, "image", "conversion-mlp"),
               "not to the conversion-mlp DNN")]
    for name, target, why in checks:
        with pytest.raises((DataError, UnsupportedModelError), match=why) as refused:
            perturbations.build(name).check(target)
        assert "\n" not in str(refused.value)
    for name in ("pgd_linf", "pgd_linf_snn_atan"):  # what each source reaches
        for engine in ("ort-dnn", "snntorch-snn"):
            perturbations.build(name).check(Target(engine, image, "image", "multimodal"))
    for engine in ("ort-dnn", "nengo-snn", "loihi-emulator"):
        perturbations.build("fgsm_linf").check(Target(engine, image, "image", "conversion-mlp"))
    for modality, shape in (("audio", (1984,)), ("multimodal", (2768,))):  # spectrogram bins in [0, 1] too
        perturbations.build("pgd_l2").check(Target("nengo-snn", shape, modality, "multimodal"))
    with pytest.raises(ConfigError, match="unknown perturbation 'pgd_linf_snn_erf'"):
        perturbations.build("pgd_linf_snn_erf")  # an unknown source
    with pytest.raises(ConfigError, match="eps -0.1 is out of range"):
        perturbations.build("pgd_linf", levels=(-0.1,))


class _Models:
    """The sweep's model lookup for one trained DNN (every engine of model ``digits`` runs it)."""

    def __init__(self, onnx_file):
        self.file = onnx_file

    def folder(self, subject):
        return self.file.parent / subject.family

    def onnx_file(self, subject):
        assert subject.family == "ort-dnn"  # crafted on the DNN, whichever engine receives it
        return self.file

    def encodes(self, subject):
        return False


def test_every_engine_of_a_model_gets_the_same_arrays_crafted_once(digits, monkeypatch):
    crafted = []
    craft = attacks.Attack.craft

    def counted(self, model, x, y, level, seed):
        crafted.append((self.name, level, seed))
        return craft(self, model, x, y, level, seed)
    monkeypatch.setattr(attacks.Attack, "craft", counted)
    monkeypatch.setattr(perturbed, "_ATTACKED", {})
    monkeypatch.setattr(perturbed, "_ATTACKERS", {})
    data = FeatureSet(digits.x, digits.y, {"test": "digits"})
    settings = SweepSettings(test_limit=0, seed=0)

    def received(engine, seed=0, level=0.1):
        child = {"perturbation": "pgd_linf", "level": level, "noise_seed": seed}
        unit = SimpleNamespace(subject=Subject(engine, "digits", "image"), child=child, settings=settings,
                               models=_Models(digits.onnx))
        return perturbed.attacked(data, unit).x

    first = received("ort-dnn")
    for engine in ("nengo-snn", "loihi-emulator", "snntorch-snn"):
        np.testing.assert_array_equal(received(engine), first)
    assert crafted == [("pgd_linf", 0.1, 0)]  # once for every engine
    assert not np.array_equal(first, digits.x)
    received("ort-dnn", seed=1)
    received("ort-dnn", level=0.2)
    assert len(crafted) == 3  # keyed by seed and level
    monkeypatch.setattr(perturbed, "_ATTACKED", {})
    monkeypatch.setattr(perturbed, "_ATTACKERS", {})
    np.testing.assert_array_equal(received("nengo-snn"), first)  # reproduced from the seed in a new process
    clean = {"level": 0.0, "noise_seed": 0, "perturbation": "rotate"}
    assert perturbed.attacked(data, SimpleNamespace(child=clean, subject=None, models=None)) is data


@pytest.mark.slow
def test_the_sweep_gives_attacks_crafted_on_the_dnn_and_the_snn_to_every_engine(tracking_store):
    require_data()
    tiny = ["--test-limit", "60", "--train-limit", "300", "--epochs", "1", "--steps", "6", "--snn-steps", "3"]
    assert main(["noise_sweep", "--modalities", "image,audio", "--perturbations", "pgd_linf,fgsm_l2_snn_fast_sigmoid",
                 *tiny]) == 0
    client = MlflowClient(tracking_store)
    runs = client.search_runs([client.get_experiment_by_name("noise_sweep").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [c for c in runs if "mlflow.parentRunId" in c.data.tags]
    seen = {(c.data.tags["engine"], c.data.tags["model"], c.data.tags["perturbation"],
             c.data.tags.get("attack_source")) for c in children if c.data.tags["modality"] == "image"}
    on_audio = {(c.data.tags["engine"], c.data.tags["perturbation"]) for c in children
                if c.data.tags["modality"] == "audio"}
    assert {("ort-dnn", "pgd_linf"), ("nengo-snn", "pgd_linf"), ("snntorch-snn", "fgsm_l2_snn_fast_sigmoid")} <= on_audio
    for engine in ("ort-dnn", "nengo-snn"):
        assert {(engine, "conversion-mlp", "pgd_linf", "dnn"), (engine, "multimodal", "pgd_linf", "dnn")} <= seen
    assert ("snntorch-snn", "multimodal", "pgd_linf", "dnn") in seen  # transferred from its DNN
    for engine in ("snntorch-snn", "ort-dnn"):  # white-box on the SNN, transferred back to the DNN
        assert (engine, "multimodal", "fgsm_l2_snn_fast_sigmoid", "snn_fast_sigmoid") in seen
    assert not any(e == "nengo-snn" and p == "fgsm_l2_snn_fast_sigmoid" for e, _, p, _ in seen)
    refused = open(client.download_artifacts(parent.info.run_id, perturbed.REFUSED)).read()
    assert "fgsm_l2_snn_fast_sigmoid on nengo-snn/multimodal/image" in refused
    table = json.load(open(client.download_artifacts(parent.info.run_id, "perturbation_gaps.json")))
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert {("nengo-snn", "pgd_linf"), ("snntorch-snn", "pgd_linf"), ("snntorch-snn", "fgsm_l2_snn_fast_sigmoid")} \
        <= {(r["snn"], r["perturbation"]) for r in rows}
    assert all(np.isfinite(r["ci_low_pp"]) and r["ci_low_pp"] <= r["gap_pp"] <= r["ci_high_pp"] for r in rows)
    assert "mean_drop_pp.attack.nengo-snn" in parent.data.metrics
