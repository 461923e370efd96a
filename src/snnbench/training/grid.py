"""The grid trainer: many models of the multimodal family trained at once, each as if alone.

A :class:`Job` is one training: a :class:`~snnbench.models.multimodal.ModelSpec` and its
:class:`~snnbench.training.suite.TrainSettings` (seed included); its result is the same model
cache folder :func:`~snnbench.training.suite.trained_multimodal_model` fills, so every other
benchmark finds it there. :func:`train_jobs` trains the jobs whose folders are missing:

* Jobs of one shape (same modality, family, size, steps, training settings; they may differ in
  seed, neuron model and reset) are **stacked**: weights ``(models, out, in)``, batched matrix
  products, one Adam over the stacked tensors (fused on CUDA). Adam and the neuron are
  elementwise and the loss is a sum of per-model losses, so each model gets its own update.
* Each model keeps what training it alone gives it: initial weights from its seed, its own
  seeded batch order and validation split, its best-validation weights.
* A spiking layer is one matrix product over all time steps and one scan over time
  (:func:`snnbench.models.spiking.neuron_scan`, snntorch ``Leaky``'s arithmetic); with direct
  encoding the first layer's input current is computed once per batch.
* The training data stay on the device as tables (one row per image / recording); batches are
  gathered there. Long inputs (fused, audio) are multiplied in chunks (split-K) so that a batch
  of 100 keeps the GPU busy.
* On CUDA (:class:`Engine`) every 16 training steps (forward, backward, Adam) and each
  validation pass are one CUDA graph, neuron scans are compiled by torch.compile, and the stacks
  run side by side on CUDA streams; float32 products may use TF32 units (off by default). On
  the CPU the same code runs eagerly, in float32.
* Progress is checkpointed (stacked weights, optimiser, best weights, history, each model's
  batch-order generator) so an interrupted grid resumes where it stopped.
* Several GPUs or machines: shares of the stacks are units of work (snnbench.execution), one
  per worker (GPU workers for CUDA); the trained models come back into the driver's cache.

:func:`evaluate_jobs` scores trained models on the test set under evaluation noise, stacked too,
with the noise draws of :mod:`snnbench.noise` (the same that ``predict`` adds).
"""

import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from snnbench.execution import Executor
from snnbench.training.cache import cached, pack, unpack
from snnbench.data import Rows, Tables
from snnbench.data.download import cache_root
from snnbench.errors import SnnbenchError
from snnbench.models.multimodal import N_CLASSES, ModelSpec, SpikingMLP, build_model, predict
from snnbench.training.suite import (TrainSettings, load_trained_multimodal, model_config, multimodal_model_folder, save_trained, tables, test_data, training_rows, trained_multimodal_model)
from snnbench.models.spiking import neuron_scan
from snnbench.noise import NoiseSpec
from snnbench.tracking.runs import config_key

STACKED_FIELDS = ("neuron", "beta", "reset")  # model fields that may differ inside one stack
CHECKPOINT_SECONDS = 300.0  # least wall time between two checkpoints of a stack
STEPS_PER_GRAPH = 16  # CUDA: training steps recorded in one graph (launches are few and cheap)


@dataclass(frozen=True)
class Engine:
    """How a grid runs on its device (never what it computes)."""
    graphs: bool = True         # CUDA: each training step one CUDA graph
    compile: bool = True        # CUDA: neuron scans compiled by torch.compile (fused elementwise kernels)
    tf32: bool = False          # CUDA: float32 matrix products on TensorFloat-32 units (10-bit mantissa inputs)
    side_by_side: bool = True   # stacks take turns on their own CUDA streams (else one after another)
    max_stack: int = 64         # most models in one stack


@dataclass(frozen=True)
class Job:
    """One training: a model and its training settings (seed included)."""
    spec: ModelSpec
    settings: TrainSettings

    @property
    def key(self) -> str:
        return config_key(model_config(self.spec, self.settings))

    @property
    def folder(self) -> Path:
        return multimodal_model_folder(self.spec, self.settings)

    def trained(self) -> bool:
        return (self.folder / "config.json").exists()

    def as_dict(self) -> dict:
        return {"spec": asdict(self.spec), "settings": asdict(self.settings)}

    @staticmethod
    def from_dict(d: dict) -> "Job":
        return Job(ModelSpec(**d["spec"]), TrainSettings(**d["settings"]))


def stack_key(job: Job) -> str:
    """Jobs with the same key train in one stack (same shapes, same data sizes, same steps)."""
    model = {k: v for k, v in asdict(job.spec).items() if k not in STACKED_FIELDS}
    training = {k: v for k, v in asdict(job.settings).items() if k != "seed"}
    return config_key({"model": model, "training": training})


def stackable(spec: ModelSpec) -> bool:
    """Rate-encoded inputs draw fresh spikes from torch's global generator at every step, which a
    stack cannot share out as the model alone would draw them: those train alone."""
    return spec.family == "dnn" or spec.encoding == "direct"


def stacks(jobs: list[Job], max_stack: int = 64) -> list[list[Job]]:
    """Jobs grouped by :func:`stack_key`, in order, at most ``max_stack`` per stack."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(stack_key(job), []).append(job)
    return [group[i:i + max_stack] for group in groups.values() for i in range(0, len(group), max_stack)]


# --- the stacked network -------------------------------------------------------------------------

def _linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    return list(model.linears) if isinstance(model, SpikingMLP) else [m for m in model if isinstance(m, torch.nn.Linear)]


def _decay(spec: ModelSpec) -> float:
    return 1.0 if spec.neuron == "if" else spec.beta  # make_neuron's choice


SPLIT_K_FROM = [2048]  # inputs at least this long are multiplied in chunks (0: never)


def split_k(k: int, chunk: int = 512) -> int:
    """Chunks to cut an input of ``k`` features into: the divisor of ``k`` nearest (by ratio)
    to ``k / chunk``; 1 for short inputs."""
    if not SPLIT_K_FROM[0] or k < SPLIT_K_FROM[0]:
        return 1
    divisors = [d for d in range(1, k + 1) if k % d == 0]
    return min(divisors, key=lambda d: abs(np.log(d * chunk / k)))


class StackedNet:
    """``G`` members of the family with one shape, as stacked tensors: weights ``(G, out, in)``,
    biases ``(G, out)``; per member a membrane decay and a reset kind (SNN)."""

    def __init__(self, specs: list[ModelSpec], models: list[torch.nn.Module], device: torch.device,
                 compile: bool = False):
        self.specs, self.spec, self.device = specs, specs[0], device
        layers = [_linears(m) for m in models]
        self.weights = [torch.stack([ls[i].weight.detach() for ls in layers]).to(device).requires_grad_()
                        for i in range(len(layers[0]))]
        self.biases = [torch.stack([ls[i].bias.detach() for ls in layers]).to(device).requires_grad_()
                       for i in range(len(layers[0]))]
        shape = (len(specs), 1, 1)  # broadcasts against one time step (G, batch, width)
        self.beta = torch.tensor([_decay(s) for s in specs], device=device).view(shape)
        self.hard = torch.tensor([float(s.reset == "hard") for s in specs], device=device).view(shape)
        self.soft = 1 - self.hard
        self.no_reset = torch.zeros_like(self.hard)  # the membrane readout
        self.compiled = compile and device.type == "cuda"

    def __len__(self):
        return len(self.specs)

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    @staticmethod
    def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T + bias`` per member: ``(G, rows, in)`` -> ``(G, rows, out)``. A long
        input (fused and audio features) is cut into chunks whose products are summed, so the
        few output tiles of a batch of 100 are shared out over many more thread blocks."""
        g, rows, k = x.shape
        split = split_k(k)
        if split == 1:
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        chunk = k // split
        xs = x.reshape(g, rows, split, chunk).transpose(1, 2).reshape(g * split, rows, chunk)
        ws = weight.reshape(g, -1, split, chunk).permute(0, 2, 3, 1).reshape(g * split, chunk, -1)
        return torch.bmm(xs, ws).view(g, split, rows, -1).sum(1) + bias.unsqueeze(1)

    def forward(self, x: torch.Tensor, noise: "NoiseDraws | None" = None, start: int = 0) -> torch.Tensor:
        """Scores ``(G, batch, classes)`` for inputs ``(G, batch, features)`` (each member its own
        batch); ``noise`` adds the evaluation noise of samples ``start ..`` as ``predict`` does."""
        if self.spec.family == "dnn":
            return self._dnn(x, noise, start)
        return self._snn(x, noise, start)

    def _dnn(self, x, noise, start):
        h = noise.add(x, "input", "input", start, 0) if noise else x
        hidden = len(self.weights) - 1
        for i in range(hidden):
            h = self._affine(h, self.weights[i], self.biases[i])
            h = noise.add(h, "pre", f"layer{i}", start, 0) if noise else h
            h = torch.relu(h)
            h = noise.add(h, "post", f"layer{i}", start, 0) if noise else h
        return self._affine(h, self.weights[-1], self.biases[-1])

    def _snn(self, x, noise, start):
        g, b = x.shape[:2]
        steps = self.spec.steps
        if noise and noise.spec.applies_to("input"):
            inputs = torch.stack([noise.add(x, "input", "input", start, t) for t in range(steps)], 1)
            current = self._affine(inputs.view(g, steps * b, -1), self.weights[0], self.biases[0]).view(g, steps, b, -1)
        else:  # direct encoding: the same input current at every step, computed once
            current = self._affine(x, self.weights[0], self.biases[0]).unsqueeze(1).expand(-1, steps, -1, -1)
        hidden = len(self.weights) - 1
        h = current  # the hidden layers' spikes, set by the first layer's scan
        for i in range(hidden):
            if i > 0:
                current = self._affine(h.reshape(g, steps * b, -1), self.weights[i], self.biases[i]).view(g, steps, b, -1)
            if noise and noise.spec.applies_to("pre"):
                current = torch.stack([noise.add(current[:, t], "pre", f"layer{i}", start, t) for t in range(steps)], 1)
            h, _ = self._scan(current, self.hard, self.soft)
            if noise and noise.spec.applies_to("post"):
                h = torch.stack([noise.add(h[:, t], "post", f"layer{i}", start, t) for t in range(steps)], 1)
        current = self._affine(h.reshape(g, steps * b, -1), self.weights[-1], self.biases[-1]).view(g, steps, b, -1)
        if self.spec.readout == "membrane":
            return self._scan(current, self.no_reset, self.no_reset)[1].mean(1)
        return self._scan(current, self.hard, self.soft)[0].sum(1)

    def _scan(self, current, hard, soft):
        return neuron_scan(current, self.beta, hard, soft, self.spec.surrogate, self.compiled)

    def member(self, index: int, tensors: list[torch.Tensor] | None = None) -> torch.nn.Module:
        """Member ``index`` as the family's own model (on the CPU), with the stacked weights
        ``tensors`` (default: the current ones), in :meth:`parameters` order."""
        tensors = self.parameters() if tensors is None else tensors
        model = build_model(self.specs[index])
        with torch.no_grad():
            for i, linear in enumerate(_linears(model)):
                linear.weight.copy_(tensors[2 * i][index].detach().cpu())
                linear.bias.copy_(tensors[2 * i + 1][index].detach().cpu())
        return model.eval()


class NoiseDraws:
    """A :class:`NoiseSpec`'s draws as device tensors, shared by every member of a stack. Unit
    draws are kept per (layer, step, samples, width), so the stds of one seed and mode share them."""

    def __init__(self, spec: NoiseSpec, device: torch.device, cache: dict | None = None):
        self.spec, self.device = spec, device
        self.cache = {} if cache is None else cache

    def add(self, tensor: torch.Tensor, position: str, layer: str, start: int, step: int) -> torch.Tensor:
        if not self.spec.applies_to(position):
            return tensor
        n, width = tensor.shape[-2:]
        step = 0 if self.spec.mode == "frozen" else step
        key = (self.spec.seed, layer, step, start, n, width)
        if key not in self.cache:
            unit = replace(self.spec, std=1.0).draw(layer, start, n, width, step)
            self.cache[key] = torch.from_numpy(np.ascontiguousarray(unit)).to(self.device)
        return tensor + self.cache[key] * self.spec.std


# --- data on the device --------------------------------------------------------------------------

_DEVICE_TABLES: dict = {}


def _on_device(array: np.ndarray, device: torch.device, name: str) -> torch.Tensor:
    key = (name, str(device))
    if key not in _DEVICE_TABLES:
        _DEVICE_TABLES[key] = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return _DEVICE_TABLES[key]


class DeviceRows:
    """Each member's samples (rows of a split's tables, all members the same count) on the device."""

    def __init__(self, split_tables: Tables, split: str, rows: list[Rows], device: torch.device):
        def stacked(part):
            arrays = [getattr(r, part) for r in rows]
            return None if arrays[0] is None else torch.from_numpy(np.stack(arrays)).to(device)

        if len({len(r) for r in rows}) != 1:
            raise SnnbenchError("members of one stack must have as many samples each")
        self.n = len(rows[0])
        self.images = (_on_device(split_tables.images, device, f"images/{split}")
                       if split_tables.images is not None and rows[0].image is not None else None)
        self.recordings = (_on_device(split_tables.recordings, device, f"recordings/{split}")
                           if split_tables.recordings is not None and rows[0].recording is not None else None)
        self.image_rows, self.recording_rows, self.labels = stacked("image"), stacked("recording"), stacked("y")

    def batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(G, B, F)`` and labels ``(G, B)`` of each member's samples at ``positions`` ``(G, B)``."""
        parts = []
        if self.images is not None:
            parts.append(self.images[self.image_rows.gather(1, positions)])
        if self.recordings is not None:
            parts.append(self.recordings[self.recording_rows.gather(1, positions)])
        x = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
        return x, self.labels.gather(1, positions)


@torch.no_grad()
def count_correct(net: StackedNet, rows: DeviceRows, batch_size: int = 1000) -> torch.Tensor:
    """Correctly classified samples per member ``(G,)``, on the device."""
    correct = torch.zeros(len(net), dtype=torch.long, device=net.device)
    for a in range(0, rows.n, batch_size):
        positions = torch.arange(a, min(a + batch_size, rows.n), device=net.device).expand(len(net), -1)
        x, y = rows.batch(positions)
        correct += (net.forward(x).argmax(-1) == y).sum(1)
    return correct


# --- training ------------------------------------------------------------------------------------

class StackTrainer:
    """Trains one stack of jobs; :meth:`step` runs one batch, :meth:`end_epoch` validates."""

    def __init__(self, jobs: list[Job], device: torch.device, engine: Engine = Engine()):
        self.jobs, self.device = jobs, device
        self.settings = jobs[0].settings
        self.epochs, self.batch_size = self.settings.epochs, self.settings.batch_size
        self.graphs = engine.graphs and device.type == "cuda"
        self.tf32 = engine.tf32 and device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.checkpoint = cache_root() / "checkpoints" / f"grid-{config_key(sorted(j.key for j in jobs))}.pt"
        modality = jobs[0].spec.modality
        split_tables = tables(modality, "train")
        parts = [training_rows(modality, j.settings)[1:] for j in jobs]
        self.train = DeviceRows(split_tables, "train", [p[0] for p in parts], device)
        self.val = DeviceRows(split_tables, "train", [p[1] for p in parts], device)
        models = []
        for job in jobs:  # each model's initial weights as trained_multimodal_model draws them
            torch.manual_seed(job.settings.seed)
            np.random.seed(job.settings.seed % 2**32)
            models.append(build_model(job.spec))
        self.net = StackedNet([j.spec for j in jobs], models, device, engine.compile)
        params = self.net.parameters()
        cuda = device.type == "cuda"
        self.optimiser = torch.optim.Adam(params, lr=self.settings.lr, fused=cuda or None, capturable=cuda)
        self.generators = [torch.Generator().manual_seed(j.settings.seed) for j in jobs]
        g = len(jobs)
        self.loss_sum = torch.zeros(g, dtype=torch.float64, device=device)
        self.best_accuracy = torch.full((g,), -1.0, dtype=torch.float64, device=device)
        self.best_epoch = torch.full((g,), -1, dtype=torch.long, device=device)
        self.best = [p.detach().clone() for p in params]
        self.history: list[dict] = []  # per epoch: train_loss, val_accuracy (device tensors), seconds
        self.epoch = 0
        self.graphs_by_steps: dict = {}  # CUDA: steps per replay -> (graph, its positions (steps, G, B))
        self.val_graph = None
        self._resume()
        self.started = time.perf_counter()
        self.saved_at = time.perf_counter()
        self.trained_epochs = 0
        self.stopping = self.stopped = False  # asked to stop at the next epoch's end / did so

    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs

    @property
    def shape(self) -> str:
        return _shape(self.jobs[0].spec)

    def _step(self, positions: torch.Tensor):
        x, y = self.train.batch(positions)
        scores = self.net.forward(x)
        losses = F.cross_entropy(scores.reshape(-1, N_CLASSES), y.reshape(-1), reduction="none")
        losses = losses.view(len(self.jobs), -1).mean(1)
        losses.sum().backward()  # each member's gradient is that of its own mean loss
        self.optimiser.step()
        self.loss_sum += losses.detach().double() * positions.shape[1]

    def _train_steps(self, positions: torch.Tensor):
        """Training steps on the batches ``positions`` ``(steps, G, B)``."""
        for batch in positions:
            self.optimiser.zero_grad(set_to_none=True)
            self._step(batch)

    def _capture(self):
        """Record the training steps (``STEPS_PER_GRAPH`` of them, and one for an epoch's last
        batches) and the validation pass as CUDA graphs. The warm-up steps that must precede a
        capture are undone (weights, optimiser state and loss sum restored)."""
        params = self.net.parameters()
        saved = [p.detach().clone() for p in params]
        fresh = not self.optimiser.state
        state = [{k: v.clone() for k, v in self.optimiser.state.get(p, {}).items()} for p in params]
        g = len(self.jobs)
        warm = torch.arange(self.batch_size, device=self.device).expand(1, g, -1)
        for _ in range(3):
            self._train_steps(warm)
        if self.val.n:
            count_correct(self.net, self.val)
        torch.cuda.current_stream(self.device).synchronize()
        pool = None
        for steps in sorted({STEPS_PER_GRAPH, 1}, reverse=True):
            positions = torch.zeros((steps, g, self.batch_size), dtype=torch.long, device=self.device)
            graph = torch.cuda.CUDAGraph()
            self.optimiser.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph, pool=pool, stream=self.stream):
                self._train_steps(positions)
            pool = graph.pool()
            self.graphs_by_steps[steps] = (graph, positions)
        if self.val.n:
            self.val_correct = torch.zeros(g, dtype=torch.long, device=self.device)
            self.val_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.val_graph, pool=pool, stream=self.stream):
                self.val_correct.copy_(count_correct(self.net, self.val))
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
            for p, saved_state in zip(params, state):
                for k, v in self.optimiser.state[p].items():
                    v.zero_() if fresh else v.copy_(saved_state[k])
            self.loss_sum.zero_()
        torch.cuda.synchronize(self.device)

    def start(self):
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with self._on_stream():
            if self.graphs and not self.done:
                self._capture()
            if not self.done:
                self._start_epoch()

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else _nothing()

    def _start_epoch(self):
        orders = torch.stack([torch.randperm(self.train.n, generator=g) for g in self.generators])
        if self.device.type == "cuda":
            orders = orders.pin_memory()
        self.order = orders.to(self.device, non_blocking=True)
        self.next_batch = 0
        self.epoch_started = time.perf_counter()
        if self.stream is not None:
            self.epoch_events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self.epoch_events[0].record(self.stream)

    def run_turn(self, steps: int = STEPS_PER_GRAPH):
        """About ``steps`` training steps (ending the epoch, and starting the next, on the way)."""
        with self._on_stream():
            done_steps = 0
            while done_steps < steps and not self.done:
                batches = -(-self.train.n // self.batch_size)
                left = batches - self.next_batch
                a = self.next_batch * self.batch_size
                count = STEPS_PER_GRAPH if left >= STEPS_PER_GRAPH and STEPS_PER_GRAPH in self.graphs_by_steps else 1
                b = min(a + count * self.batch_size, self.train.n)
                if count in self.graphs_by_steps and b - a == count * self.batch_size:
                    graph, positions = self.graphs_by_steps[count]
                    positions.copy_(self.order[:, a:b].view(len(self.jobs), count, -1).transpose(0, 1))
                    graph.replay()
                else:  # the CPU, or an epoch's last, smaller batch
                    self._train_steps(self.order[:, a:b].unsqueeze(0))
                self.next_batch += count
                done_steps += count
                if b >= self.train.n:
                    self._end_epoch()
                    if self.stopping and not self.done:
                        self.save_checkpoint()
                        self.stopped = True
                        return
                    if not self.done:
                        self._start_epoch()

    def _end_epoch(self):
        g = len(self.jobs)
        if self.val.n:
            if self.val_graph is not None:
                self.val_graph.replay()
                correct = self.val_correct.clone()
            else:
                correct = count_correct(self.net, self.val)
            accuracy = correct.double() / self.val.n
            improved = accuracy > self.best_accuracy
        else:
            accuracy = torch.full((g,), float("nan"), dtype=torch.float64, device=self.device)
            improved = torch.ones(g, dtype=torch.bool, device=self.device)
        self.best_accuracy = torch.where(improved, accuracy, self.best_accuracy)
        self.best_epoch = torch.where(improved, torch.full_like(self.best_epoch, self.epoch), self.best_epoch)
        with torch.no_grad():
            for p, best in zip(self.net.parameters(), self.best):
                best.copy_(torch.where(improved.view(-1, *[1] * (p.dim() - 1)), p, best))
        entry = {"train_loss": self.loss_sum / self.train.n, "val_accuracy": accuracy}
        self.loss_sum.zero_()  # in place: the CUDA graph adds into this very tensor
        if self.stream is not None:
            self.epoch_events[1].record(self.stream)
            entry["events"] = self.epoch_events
        else:
            entry["epoch_seconds"] = time.perf_counter() - self.epoch_started
        self.history.append(entry)
        self.epoch += 1
        self.trained_epochs += 1
        if time.perf_counter() - self.saved_at > CHECKPOINT_SECONDS and not self.done:
            self.save_checkpoint()

    def _host_history(self) -> list[dict]:
        """The history with its values on the host (waits for the stack's work so far)."""
        if self.stream is not None:
            self.stream.synchronize()
        for entry in self.history:
            for key in ("train_loss", "val_accuracy"):
                if isinstance(entry[key], torch.Tensor):
                    entry[key] = entry[key].cpu().numpy()
            if "events" in entry:
                begin, end = entry.pop("events")
                entry["epoch_seconds"] = begin.elapsed_time(end) / 1000.0
        return self.history

    def save_checkpoint(self):
        history = self._host_history()
        state = {"jobs": [j.key for j in self.jobs], "epoch": self.epoch, "history": history,
                 "params": [p.detach().cpu() for p in self.net.parameters()],
                 "optimiser": self.optimiser.state_dict(), "best": [b.cpu() for b in self.best],
                 "best_accuracy": self.best_accuracy.cpu(), "best_epoch": self.best_epoch.cpu(),
                 "generators": [g.get_state() for g in self.generators]}
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{self.checkpoint}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint)
        self.saved_at = time.perf_counter()

    def _resume(self):
        if not self.checkpoint.exists():
            return
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        if state["jobs"] != [j.key for j in self.jobs]:
            return
        with torch.no_grad():
            for p, saved in zip(self.net.parameters(), state["params"]):
                p.copy_(saved)
            for b, saved in zip(self.best, state["best"]):
                b.copy_(saved)
        self.optimiser.load_state_dict(state["optimiser"])
        self.best_accuracy = state["best_accuracy"].to(self.device)
        self.best_epoch = state["best_epoch"].to(self.device)
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
        self.history = [dict(h) for h in state["history"]]
        self.epoch = state["epoch"]

    def finish(self) -> list[Path]:
        """Save each member's best-validation model to its cache folder; drop the checkpoint."""
        history = self._host_history()
        best_accuracy = self.best_accuracy.cpu().numpy()
        best_epoch = self.best_epoch.cpu().numpy()
        folders = []
        for i, job in enumerate(self.jobs):
            model = self.net.member(i, self.best)
            epochs = [{"train_loss": float(h["train_loss"][i]), "val_accuracy": float(h["val_accuracy"][i]),
                       "epoch_seconds": h["epoch_seconds"],
                       "train_samples_per_s": self.train.n / h["epoch_seconds"]}
                      for h in history]
            mean_seconds = float(np.mean([h["epoch_seconds"] for h in history])) if history else 0.0
            summary = {"best_val_accuracy": float(best_accuracy[i]), "best_epoch": int(best_epoch[i]),
                       "history": epochs, "epoch_seconds": mean_seconds,
                       "train_samples_per_s": float(np.mean([e["train_samples_per_s"] for e in epochs])) if epochs else 0.0,
                       "n_train": self.train.n, "n_val": self.val.n, "trained_on": str(self.device),
                       "tf32_products": self.tf32,
                       "stacked_with": len(self.jobs), "stack_shape": self.shape, "validation": job.settings.validation}
            folders.append(cached("multimodal", model_config(job.spec, job.settings),
                                  lambda folder, m=model, s=summary, j=job: save_trained(folder, j.spec, m, s)))
        self.checkpoint.unlink(missing_ok=True)
        return folders


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_stacks(trainers: list[StackTrainer], side_by_side: bool = True, deadline: float | None = None,
               log=print) -> dict:
    """Train every stack to its last epoch: taking turns (side by side on CUDA streams), or one
    after the other. Past ``deadline`` (a ``time.perf_counter()`` value) each stack stops at
    its next epoch's end with a checkpoint, and stacks not started yet are left. Returns
    throughput per stack shape (model-epochs per second of its epochs)."""
    waiting = list(trainers)
    active = []
    started = reported = time.perf_counter()
    while waiting or active:
        now = time.perf_counter()
        if now - reported > 60 and active:
            epochs = [t.epoch for t in active]
            log(f"grid: {now - started:.0f} s, {len(active)} stacks training, epochs {min(epochs)}-{max(epochs)} "
                f"of {max(t.epochs for t in active)}, {len(waiting)} waiting")
            reported = now
        late = deadline is not None and now > deadline
        if late:
            waiting.clear()
            for trainer in active:
                trainer.stopping = True
        while waiting and (side_by_side or not active):
            trainer = waiting.pop(0)
            trainer.start()
            if trainer.done:  # nothing left to train (no epochs)
                trainer.finish()
            else:
                active.append(trainer)
        for trainer in list(active):
            trainer.run_turn()
            if trainer.done:
                trainer.finish()
                active.remove(trainer)
                log(f"grid: {trainer.shape} x{len(trainer.jobs)} trained ({time.perf_counter() - trainer.started:.0f} s)")
            elif trainer.stopped:
                active.remove(trainer)
                log(f"grid: {trainer.shape} x{len(trainer.jobs)} stopped at epoch {trainer.epoch} (checkpointed)")
    speeds = {}
    for trainer in trainers:
        if trainer.stream is not None and trainer.history:
            trainer._host_history()
        history = trainer.history[-trainer.trained_epochs:] if trainer.trained_epochs else []
        seconds = [h["epoch_seconds"] for h in history if "epoch_seconds" in h]
        if seconds:
            speeds.setdefault(trainer.shape, []).append(
                {"models": len(trainer.jobs), "epochs": len(seconds), "epoch_seconds": float(np.median(seconds)),
                 "model_epochs_per_s": len(trainer.jobs) / float(np.median(seconds))})
    return speeds


def _train_alone(job: Job, device: torch.device):
    trained_multimodal_model(job.spec, job.settings, device)


def train_jobs(jobs: list[Job], devices: list[torch.device] | None = None, engine: Engine = Engine(),
               time_limit: float = 0.0, log=print, executor=None) -> dict:
    """Train every job whose model is not cached yet. With ``time_limit`` (seconds, 0 = none) the
    stacks stop at the first epoch end past it, checkpointed: calling again resumes them.
    With a cluster ``executor`` (snnbench.execution) its workers train shares of the stacks.
    Returns a summary: wall seconds, devices, stacks, throughput per stack shape, and
    ``complete`` (every job trained)."""
    devices = devices or [torch.device("cpu")]
    started = time.perf_counter()
    deadline = started + time_limit if time_limit else None
    todo = [j for j in dict.fromkeys(jobs) if not j.trained()]
    alone = [j for j in todo if not stackable(j.spec)]
    groups = stacks([j for j in todo if stackable(j.spec)], engine.max_stack)
    summary = {"devices": [str(d) for d in devices], "jobs": len(jobs), "trained_now": len(todo),
               "stacks": [{"shape": _shape(g[0].spec), "models": len(g)} for g in groups]}
    if groups and executor is not None and executor.client is not None:
        summary["speeds"] = _train_on_cluster(groups, devices, engine, time_limit, executor, log)
    elif len(devices) > 1 and groups:  # one local worker per GPU
        with Executor.local(len(devices), [d.index for d in devices]) as local:
            summary["speeds"] = _train_on_cluster(groups, devices, engine, time_limit, local, log)
    elif groups:
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = engine.tf32
        try:
            summary["speeds"] = run_stacks([StackTrainer(g, devices[0], engine) for g in groups],
                                           engine.side_by_side, deadline, log)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    for job in alone:
        if deadline is None or time.perf_counter() < deadline:
            _train_alone(job, devices[0])
    summary["wall_seconds"] = time.perf_counter() - started
    summary["complete"] = all(j.trained() for j in jobs)
    return summary


def _shape(spec: ModelSpec) -> str:
    return f"{spec.modality}/{spec.family}/{spec.size}" + (f"/T={spec.steps}" if spec.family == "snn" else "")


def stack_cost(group: list[Job]) -> float:
    """A rough relative cost of training a stack (for spreading stacks over devices)."""
    spec, settings = group[0].spec, group[0].settings
    steps = spec.steps if spec.family == "snn" else 1
    n = settings.train_limit or (2700 if spec.modality == "audio" else 60000)
    return settings.epochs * n / settings.batch_size * steps * (1 + 0.1 * len(group)) * spec.hidden_width ** 0.5


def share_out(groups: list[list[Job]], n_devices: int) -> list[list[list[Job]]]:
    """Stacks shared out over devices: heaviest first, each to the least loaded device."""
    shares = [[] for _ in range(n_devices)]
    load = [0.0] * n_devices
    for group in sorted(groups, key=stack_cost, reverse=True):
        i = int(np.argmin(load))
        shares[i].append(group)
        load[i] += stack_cost(group)
    return shares


@dataclass(frozen=True)
class StackShare:
    """A unit of work (snnbench.execution): the stacks one worker trains side by side on its device
    (``cuda``: the worker's own GPU)."""
    jobs: tuple
    device: str
    engine: Engine
    time_limit: float


def train_share(share: StackShare) -> dict:
    """Train a share on the worker; its speeds and every model it finished (packed, so that they
    reach the driver's cache from any machine)."""
    summary = train_jobs(list(share.jobs), [torch.device(share.device)], share.engine, share.time_limit)
    return {"speeds": summary.get("speeds", {}), "models": [pack(j.folder) for j in share.jobs if j.trained()]}


def _train_on_cluster(groups, devices, engine: Engine, time_limit: float, executor, log) -> dict:
    """Stacks shared out over the executor's workers (GPU workers for CUDA), one unit each; the
    models come back into this machine's cache."""
    gpu = devices[0].type == "cuda"
    shares = [s for s in share_out(groups, executor.workers(gpu=gpu)) if s]
    units = [StackShare(tuple(j for group in share for j in group), "cuda" if gpu else "cpu", engine, time_limit)
             for share in shares]
    log(f"grid: {sum(len(u.jobs) for u in units)} trainings in {len(units)} shares on {executor}")
    speeds = {}
    for _, result in executor.map(train_share, units, gpu=gpu):
        for packed in result["models"]:
            unpack(packed)
        for shape, entries in result["speeds"].items():
            speeds.setdefault(shape, []).extend(entries)
    return speeds


# --- evaluation ----------------------------------------------------------------------------------

def evaluate_jobs(jobs: list[Job], noises: list[NoiseSpec], device: torch.device, test_limit: int = 0,
                  batch_size: int = 1000, engine: Engine = Engine()) -> dict:
    """Test-set logits of each trained job under each noise: ``{(job.key, noise): (logits, labels)}``.
    Models of one shape run stacked with shared noise draws; rate-encoded ones through ``predict``."""
    results = {}
    by_shape: dict = {}
    for job in dict.fromkeys(jobs):
        by_shape.setdefault(stack_key(job), []).append(job)
    for group in by_shape.values():
        test = test_data(group[0].spec.modality, test_limit, group[0].settings.pair_seed)
        loaded = [load_trained_multimodal(j.folder) for j in group]
        if not stackable(group[0].spec):
            for job, (model, _, _) in zip(group, loaded):
                for noise in noises:
                    results[(job.key, noise)] = (predict(model, test.x, noise, batch_size, device), test.y)
            continue
        net = StackedNet([spec for _, spec, _ in loaded], [m for m, _, _ in loaded], device, engine.compile)
        x_all = torch.from_numpy(test.x).to(device)
        cache: dict = {}
        for noise in noises:
            draws = NoiseDraws(noise, device, cache) if noise.active else None
            with torch.no_grad():
                logits = torch.cat([net.forward(x_all[a:a + batch_size].expand(len(net), -1, -1), draws, a)
                                    for a in range(0, len(test), batch_size)], 1).cpu().numpy()
            for i, job in enumerate(group):
                results[(job.key, noise)] = (logits[i], test.y)
    return results
