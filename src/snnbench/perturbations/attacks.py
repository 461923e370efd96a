"""Adversarial attacks: FGSM and PGD under an L-infinity or L2 budget, crafted white-box on a source model
with adversarial-robustness-toolbox (ART) and given, the very same arrays, to every engine that runs it.

A family is ``<method>_<norm>`` (crafted on the DNN) or ``<method>_<norm>_snn_<surrogate>`` (crafted on the
snntorch SNN through that surrogate gradient, swapped in for the attacker only); its ``source`` says which.

* **Crafted on the DNN** (``source`` ``dnn``): the model's ONNX file as snnbench reads it, a float32 torch
  function (:meth:`~snnbench.conversion.graph.ConvertedModel.stage_outputs`), a user's input encoding in
  front. White-box for ONNX Runtime, transferred to the converted SNN (Nengo, the Loihi emulator) and, for
  the suite's ``multimodal`` model, to its snntorch SNN (same data and architecture).
* **Crafted on the snntorch SNN** (``source`` ``snn_atan``, ``snn_fast_sigmoid``): white-box for the SNN
  (Xu et al. 2022: white-box results depend on the attacker's surrogate, so two are offered), transferred
  back to the suite's DNN in ONNX Runtime.

Budgets ``eps`` are in the data's own units, features in [0, 1]: an image's pixels, an FSDD spectrogram's
log-magnitude bins (scaled to [0, 1] per recording), or both halves of a multimodal pair (one vector, one
norm); adversarial samples stay in [0, 1]. On audio an attack perturbs the spectrogram, not the waveform. L-infinity 0.05 .. 0.3 (0.3: Madry et al., ICLR 2018, MNIST; quick 0.1), L2 0.5 .. 3 (1.5: Schott
et al., ICLR 2019, MNIST; quick 1.5). PGD: untargeted, no random start (deterministic), ``iterations`` steps
(10: PGD-10, as SNN robustness studies evaluate) of 2.5 eps / iterations (Madry et al.'s rule). A rate-encoded
SNN is attacked through its spikes' straight-through gradient, its scores averaged over ``EOT_DRAWS`` draws of
its input spikes (expectation over transformation), the draws seeded from the family, level and seed.
"""

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from snntorch import SpikingNeuron

from snnbench.engines import LOIHI_EMULATOR, NENGO_SNN, ORT_DNN, SNNTORCH_SNN
from snnbench.errors import ConfigError, DataError, UnsupportedModelError
from snnbench.models.spiking import SURROGATES
from snnbench.perturbations import ATTACKS, Perturbation, Target, keyed_rng, register

NORMS = {"linf": np.inf, "l2": 2}
BUDGETS = {"linf": ((0.05, 0.1, 0.2, 0.3), (0.1,)), "l2": ((0.5, 1.0, 1.5, 2.0, 3.0), (1.5,))}
DNN_ENGINES = (ORT_DNN, NENGO_SNN, LOIHI_EMULATOR, SNNTORCH_SNN)
SNN_ENGINES = (SNNTORCH_SNN, ORT_DNN)
PIXELS = (0.0, 1.0)
EOT_DRAWS = 8  # draws of a rate-encoded SNN's input spikes whose scores an attack step averages


@dataclass(frozen=True)
class Attack(Perturbation):
    """An evasion attack; subclasses set ``method``, ``norm`` and ``source``."""
    kind: ClassVar[str] = "attack"
    level_name: ClassVar[str] = "eps"
    method: ClassVar[str] = ""
    norm: ClassVar[str] = ""
    source: ClassVar[str] = ""  # dnn, or snn_<surrogate>
    iterations: int = 10  # PGD's steps

    def __post_init__(self):
        super().__post_init__()
        if self.iterations < 1:
            raise ConfigError(f"{self.name}: iterations must be >= 1, got {self.iterations}")

    @property
    def level_help(self) -> str:
        return f"{self.norm} budgets > 0 in the features' units (pixels or spectrogram bins in [0, 1]), e.g. " \
               f"{BUDGETS[self.norm][0]}"

    def valid_level(self, level: float) -> bool:
        return level > 0

    @property
    def surrogate(self) -> str:
        """The SNN attacker's surrogate gradient ('' when crafted on the DNN)."""
        return self.source.removeprefix("snn_") if self.source != "dnn" else ""

    @property
    def engines(self) -> tuple:
        return DNN_ENGINES if self.source == "dnn" else SNN_ENGINES

    def check(self, target: Target) -> None:
        super().check(target)
        if self.source == "dnn" and target.engine == SNNTORCH_SNN and target.model != "multimodal":
            raise UnsupportedModelError(f"{self.name} is crafted on a DNN; only the suite's multimodal SNN has a "
                                        f"DNN of its own data and architecture, not the {target.model} SNN")
        if self.source != "dnn" and target.engine == ORT_DNN and target.model != "multimodal":
            raise UnsupportedModelError(f"{self.name} is crafted on the snntorch SNN and transfers to the suite's "
                                        f"multimodal DNN of the same architecture, not to the {target.model} DNN")

    def craft(self, model: nn.Module, x: np.ndarray, y: np.ndarray, level: float, seed: int) -> np.ndarray:
        """Adversarial versions of samples ``x`` (n, features) with labels ``y`` against ``model`` (a torch
        module from features to class scores), each within ``level`` of its sample in this family's norm."""
        x = np.asarray(x, np.float32)
        if x.size and (x.min() < PIXELS[0] or x.max() > PIXELS[1]):
            raise DataError(f"{self.name}: attack budgets are in the units of features in [0, 1], and these samples "
                            f"range over [{x.min():g}, {x.max():g}]; rescale the data set to [0, 1]")
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        with torch.no_grad():
            n_classes = int(model(torch.as_tensor(x[:1])).shape[-1])
        classifier = PyTorchClassifier(model, nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=n_classes,
                                       clip_values=PIXELS, device_type="cpu")
        batch = max(len(x), 1)
        if self.method == "fgsm":
            attack = FastGradientMethod(classifier, norm=NORMS[self.norm], eps=level, batch_size=batch)
        else:
            attack = ProjectedGradientDescent(classifier, norm=NORMS[self.norm], eps=level,
                                              eps_step=2.5 * level / self.iterations, max_iter=self.iterations,
                                              num_random_init=0, batch_size=batch, verbose=False)
        with torch.random.fork_rng():  # a rate-encoded SNN's input spikes: keyed draws
            torch.manual_seed(int(keyed_rng(seed, self.name, level).integers(2 ** 31)))
            return attack.generate(x, y=np.asarray(y, np.int64)).astype(np.float32)


class _Graph(nn.Module):
    """A DNN read from its ONNX file (snnbench.conversion.graph) as a float32 torch module (as ONNX Runtime computes it), behind an
    optional affine input encoding."""

    def __init__(self, graph, encoding: nn.Linear | None = None):
        super().__init__()
        self.graph, self.encoding = graph, encoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.encoding is not None:
            x = self.encoding(x)
        return self.graph.stage_outputs(x)[-1]


def affine_encoding(encode: Callable[[np.ndarray], np.ndarray], n_features: int) -> nn.Linear:
    """``encode`` (samples -> a model's inputs) as the affine map it must be for gradients to pass through
    it, read off its values at zero and at each unit sample, and checked on random samples."""
    if n_features > 20000:
        raise UnsupportedModelError(f"attacks read a model's input encoding as an affine map of its {n_features} "
                                    "features, and take at most 20000; attack a smaller input")
    offset = np.asarray(encode(np.zeros((1, n_features), np.float32)), np.float64)
    matrix = np.asarray(encode(np.eye(n_features, dtype=np.float32)), np.float64) - offset
    probe = np.random.default_rng(0).random((4, n_features), dtype=np.float32)
    expected = np.asarray(encode(probe), np.float64)
    if not np.allclose(probe @ matrix + offset, expected, atol=1e-4 * (1 + np.abs(expected).max())):
        raise UnsupportedModelError("the model's input encoding is not affine (an encoder graph), so no gradient "
                                    "passes through it; attack a model whose encoding is a scale, mean and std")
    layer = nn.Linear(n_features, matrix.shape[1])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(matrix.T, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(offset[0], dtype=torch.float32))
    return layer.requires_grad_(False)


def dnn_module(onnx_file, encode: Callable[[np.ndarray], np.ndarray] | None = None,
               n_features: int = 0) -> nn.Module:
    """The DNN of ``onnx_file`` as a torch module from data samples to logits (``encode``: the samples'
    encoding into the file's inputs, e.g. a user's scale, mean and std)."""
    from snnbench.conversion.converted_files import load_any

    return _Graph(load_any(onnx_file), affine_encoding(encode, n_features) if encode else None).eval()


class _Surrogate(nn.Module):
    """An snntorch network whose neurons back-propagate through another surrogate gradient while this
    module runs it (the attacker's choice); the forward pass, and the network outside it, are unchanged.
    A rate-encoded network is random: its scores are averaged over ``draws`` draws of its input spikes,
    each back-propagated straight through (expectation over transformation, Athalye et al., ICML 2018)."""

    def __init__(self, snn: nn.Module, spike_grad, draws: int = 1):
        super().__init__()
        self.snn, self.spike_grad, self.draws = snn, spike_grad, draws
        self.neurons = [m for m in snn.modules() if isinstance(m, SpikingNeuron)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = [neuron.spike_grad for neuron in self.neurons]
        try:  # a spike's backward is fixed when it is computed: swapped for this forward pass only
            for neuron in self.neurons:
                neuron.spike_grad = self.spike_grad
            return sum(self.snn(x) for _ in range(self.draws)) / self.draws
        finally:
            for neuron, spike_grad in zip(self.neurons, kept):
                neuron.spike_grad = spike_grad


def with_surrogate(snn: nn.Module, surrogate: str) -> nn.Module:
    """``snn`` (an snntorch network) as the attacker sees it: back-propagating through ``surrogate``."""
    if surrogate not in SURROGATES:
        raise ConfigError(f"unknown surrogate gradient {surrogate!r}; use one of {', '.join(SURROGATES)}")
    rate_encoded = getattr(getattr(snn, "spec", None), "encoding", "direct") == "rate"
    attacker = _Surrogate(snn.eval(), SURROGATES[surrogate](), EOT_DRAWS if rate_encoded else 1)
    if not attacker.neurons:
        raise UnsupportedModelError("the SNN has no snntorch neurons whose surrogate gradient an attack could use")
    return attacker


def _family(name: str) -> type:
    method, norm, *source = name.split("_", 2)
    levels, quick = BUDGETS[norm]
    cls = type(name, (Attack,), {"__annotations__": {"levels": tuple, "quick": tuple}, "levels": levels,
                                 "quick": quick, "method": method, "norm": norm,
                                 "source": source[0] if source else "dnn",
                                 "__doc__": f"{method.upper()}, {norm} budget, crafted on the "
                                            f"{'snntorch SNN (' + source[0][4:] + ' surrogate)' if source else 'DNN'}."})
    return register(name)(dataclass(frozen=True)(cls))


for _name in ATTACKS:
    _family(_name)
