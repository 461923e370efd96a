"""What a study keeps fixed: the model to convert, its calibration, how it is simulated, where it
is scored (stored in the study as the user attribute ``task`` and checked on resume)."""

import json
from dataclasses import asdict, dataclass, field, fields

from snnbench.config import auto, check_choices, option, positive
from snnbench.conversion.calibration import Calibration
from snnbench.data import DATASET_HELP
from snnbench.errors import ConfigError
from snnbench.tuning.space import SearchSpace

SECOND_OBJECTIVES = ("none", "spikes", "synops")  # minimised: spikes / synaptic operations per image
# the second objective's total over a prediction, from its snnbench.evaluation.metrics.Activity
SECOND_STATS = {"spikes": lambda a: a.spikes, "synops": lambda a: a.macs + a.acs}
STUDY, TASK = "study", "fixed for the study"  # the options' sections of `snnbench tune --help`


@dataclass(frozen=True)
class ConversionTask:
    arch: str = "mlp"
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 100
    seed: int = 0                  # model training, the train/validation split, the calibration subset
    train_limit: int | None = None  # train the DNN on the first N training images only (tests)
    neuron: str = "if"             # the calibrated neuron (snnbench.conversion.calibration)
    calibration_samples: int = 1000
    percentile: float = 99.9
    target_rate: float = 1.0
    initial_voltage: str = "half"
    steps: int = 8
    dt: float = 0.001
    readout: str = "mean"
    minibatch: int = 100
    simulator: str = "nengo_dl"
    val_samples: int = option(2000, "validation samples per trial: the first of --dataset's validation split "
                                    "(auto: 1000 quick, 12000 full, at most the split's size)",
                              auto(positive(int)), group=TASK)
    val_steps: int = option(4, "growing validation subsets reported to the pruner", positive(int), group=TASK)
    second_objective: str = option("none", "also minimise spikes or synaptic operations per image (a multi-objective "
                                           "study: no pruning; the best setting is the most accurate on the Pareto "
                                           "front)", choices=SECOND_OBJECTIVES, group=STUDY)
    dataset: str = option("mnist", "the data set calibrated and validated on (its training and validation splits; "
                                   f"the test split only scores the result): {DATASET_HELP}", group=TASK)
    onnx_model: str = option("", "tune the conversion of this .onnx model (trained on --dataset) instead of the "
                                 "conversion DNN that tune trains on MNIST", group=TASK)
    model_input: dict = field(default_factory=dict)  # --onnx-model's --output and --input-* (ModelInput's fields)
    space: SearchSpace = field(default_factory=SearchSpace)

    def check(self):
        self.calibration()
        check_choices(self)
        if self.dataset != "mnist" and not self.onnx_model:
            raise ConfigError(f"--dataset {self.dataset} needs --onnx-model, a model trained on it: the DNN that tune "
                              "trains itself is an MNIST classifier")
        if self.val_samples < self.val_steps or self.val_steps < 1:
            raise ConfigError(f"--val-samples ({self.val_samples}) must be at least --val-steps "
                              f"({self.val_steps}), and --val-steps at least 1")
        self.space.check()

    def calibration(self) -> Calibration:
        """The calibrated conversion the study starts from (and scores as 'calibrated')."""
        return Calibration(self.calibration_samples, self.percentile, self.target_rate, self.neuron,
                           self.initial_voltage, self.seed)

    @property
    def multi_objective(self) -> bool:
        return self.second_objective != "none"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "ConversionTask":
        known = {f.name for f in fields(cls)} - {"space"}
        space = {k: tuple(v) if v is not None else None for k, v in data.get("space", {}).items()}
        return cls(**{k: v for k, v in data.items() if k in known}, space=SearchSpace(**space))

    def sim_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("steps", "dt", "readout", "minibatch", "simulator")}
