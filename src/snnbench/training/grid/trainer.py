"""Training stacks: the data on the device, the stacked step (CUDA graphs on CUDA), checkpoints,
stacks side by side."""

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from snnbench.data import Rows, Tables
from snnbench.errors import SnnbenchError
from snnbench.models.multimodal import N_CLASSES, build_model
from snnbench.training.cache import cached, checkpoint_path, save_atomic
from snnbench.training.grid.plan import ADAM_BYTES_PER_PARAMETER, Engine, Job, product_flops, stack_shape
from snnbench.training.grid.stacked import StackedNet
from snnbench.training.loop import seed_everything
from snnbench.training.suite import model_config, save_trained, tables, training_rows

# what grid.time_step_parts times: a whole training step, the step without its optimiser step, the
# forward pass and loss alone, the optimiser step alone
STEP_PARTS = ("step", "no_optimiser", "forward", "optimiser")
CHECKPOINT_SECONDS = 300.0  # least wall time between two checkpoints of a stack
STEPS_PER_GRAPH = 16  # CUDA: training steps recorded in one graph (launches are few and cheap)

_DEVICE_TABLES: dict = {}  # (table name, device) -> that table on the device


def _on_device(array: np.ndarray, device: torch.device, name: str) -> torch.Tensor:
    key = (name, str(device))
    if key not in _DEVICE_TABLES:
        _DEVICE_TABLES[key] = torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return _DEVICE_TABLES[key]


class DeviceRows:
    """Each member's samples (rows of a split's tables, all members the same count) on the device."""

    def __init__(self, split_tables: Tables, split: str, rows: list[Rows], device: torch.device):
        if len({len(r) for r in rows}) != 1:
            raise SnnbenchError("members of one stack must have as many samples each")
        self.n = len(rows[0])
        self.labels = torch.from_numpy(np.stack([r.y for r in rows])).to(device)
        self.parts = [(_on_device(table, device, f"{part}s/{split}"),  # (a table, each member's rows of it)
                       torch.from_numpy(np.stack([getattr(r, part) for r in rows])).to(device))
                      for part, table in (("image", split_tables.images), ("recording", split_tables.recordings))
                      if table is not None and getattr(rows[0], part) is not None]

    def batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(G, B, F)`` and labels ``(G, B)`` of each member's samples at ``positions`` ``(G, B)``."""
        parts = [table[part_rows.gather(1, positions)] for table, part_rows in self.parts]
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


class StackTrainer:
    """Trains one stack of jobs: :meth:`start`, then :meth:`run_turn` until done (or stopped), then :meth:`finish`."""

    def __init__(self, jobs: list[Job], device: torch.device, engine: Engine = Engine()):
        self.jobs, self.device = jobs, device
        settings, cuda = jobs[0].settings, device.type == "cuda"
        self.epochs, self.batch_size = settings.epochs, settings.batch_size
        rate = jobs[0].spec.encoding == "rate"  # input spikes drawn in each step: not captured in graphs
        self.graphs = engine.graphs and cuda and not rate
        self.tf32 = engine.tf32 and cuda
        self.stream = torch.cuda.Stream(device) if cuda else None
        self.checkpoint = checkpoint_path("grid-v2", sorted(j.key for j in jobs))
        modality = jobs[0].spec.modality
        train, val = zip(*(training_rows(modality, j.settings) for j in jobs))
        self.train = DeviceRows(tables(modality, "train"), "train", list(train), device)
        self.val = DeviceRows(tables(modality, "train"), "train", list(val), device)
        models = []
        for job in jobs:  # each model's initial weights drawn from its own seed
            seed_everything(job.settings.seed)
            models.append(build_model(job.spec))
        self.net = StackedNet([j.spec for j in jobs], models, device, engine.scan)
        if rate:  # each member's input spikes as it alone draws them, after its seeded initialisation
            self.net.generators = [torch.Generator(device).manual_seed(j.settings.seed) for j in jobs]
        params = self.net.parameters()
        self.optimiser = torch.optim.Adam(params, lr=settings.lr, fused=cuda or None, capturable=cuda)
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
        self.started = self.saved_at = time.perf_counter()
        self.trained_epochs = 0
        self.stopping = self.stopped = False  # asked to stop at the next epoch's end / did so

    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs

    @property
    def shape(self) -> str:
        return stack_shape([j.spec for j in self.jobs])

    def _train_steps(self, positions: torch.Tensor, part: str = "step"):
        """Training steps on the batches ``positions`` ``(steps, G, B)``, or one part of each
        (:data:`STEP_PARTS`, timed by snnbench.training.grid.time_step_parts)."""
        for batch in positions:
            if part != "optimiser":
                self.optimiser.zero_grad(set_to_none=True)
                x, y = self.train.batch(batch)
                losses = F.cross_entropy(self.net.forward(x).reshape(-1, N_CLASSES), y.reshape(-1), reduction="none")
                losses = losses.view(len(self.jobs), -1).mean(1)
                if part != "forward":
                    losses.sum().backward()  # each member's gradient is that of its own mean loss
            if part in ("step", "optimiser"):
                self.optimiser.step()
            if part != "optimiser":
                self.loss_sum += losses.detach().double() * batch.shape[1]

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.train.n // self.batch_size)

    @property
    def probe_steps(self) -> int:
        """Training steps in one call of a :meth:`part_steps` callable."""
        return STEPS_PER_GRAPH if self.graphs else 1

    def part_steps(self, part: str):
        """A callable that runs ``part`` of :attr:`probe_steps` training steps on fixed batches (CUDA:
        a graph replay), after :meth:`ready`; it changes the weights."""
        positions = self._full_batch().expand(self.probe_steps, len(self.jobs), -1)
        if part == "optimiser":  # it steps on gradients of zero (Adam's work does not depend on their values)
            for p in self.net.parameters():
                p.grad = torch.zeros_like(p)
        if not self.graphs:
            return lambda: self._train_steps(positions, part)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self._train_steps(positions, part)
        return graph.replay

    def _full_batch(self) -> torch.Tensor:
        """Positions of a batch of ``batch_size`` rows, however few rows there are."""
        return torch.arange(self.batch_size, device=self.device) % self.train.n

    def _capture(self):
        """Record the training steps (``STEPS_PER_GRAPH`` of them, and one for an epoch's last
        batches) and the validation pass as CUDA graphs. The warm-up steps that must precede a
        capture are undone (weights, optimiser state and loss sum restored)."""
        params = self.net.parameters()
        saved = [p.detach().clone() for p in params]
        fresh = not self.optimiser.state
        state = [{k: v.clone() for k, v in self.optimiser.state.get(p, {}).items()} for p in params]
        g = len(self.jobs)
        warm = self._full_batch().expand(1, g, -1)
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
        if not self.done:
            self.ready()
            with self._on_stream():
                self._start_epoch()

    def ready(self):
        """Wait for the stack's set-up; on CUDA, warm its steps up and capture them."""
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with self._on_stream():
            if self.graphs:
                self._capture()

    def _on_stream(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

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
                left = self.steps_per_epoch - self.next_batch  # batches left in the epoch
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
                 "generators": [g.get_state() for g in self.generators],
                 "spike_generators": [g.get_state() for g in self.net.generators or []]}
        save_atomic(state, self.checkpoint)
        self.saved_at = time.perf_counter()

    def _resume(self):
        if not self.checkpoint.exists():
            return
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        if state["jobs"] != [j.key for j in self.jobs]:
            return
        with torch.no_grad():
            for tensor, saved in zip(self.net.parameters() + self.best, state["params"] + state["best"]):
                tensor.copy_(saved)
        self.optimiser.load_state_dict(state["optimiser"])
        self.best_accuracy = state["best_accuracy"].to(self.device)
        self.best_epoch = state["best_epoch"].to(self.device)
        saved = state["generators"] + state.get("spike_generators", [])
        for g, s in zip(self.generators + (self.net.generators or []), saved):
            g.set_state(s)
        self.history = [dict(h) for h in state["history"]]
        self.epoch = state["epoch"]

    def finish(self):
        """Save each member's best-validation model to its cache folder; drop the checkpoint."""
        history = self._host_history()
        best_accuracy = self.best_accuracy.cpu().numpy()
        best_epoch = self.best_epoch.cpu().numpy()
        seconds = [h["epoch_seconds"] for h in history]
        speeds = [self.train.n / s for s in seconds]
        for i, job in enumerate(self.jobs):
            epochs = [{"train_loss": float(h["train_loss"][i]), "val_accuracy": float(h["val_accuracy"][i]),
                       "epoch_seconds": s, "train_samples_per_s": speed}
                      for h, s, speed in zip(history, seconds, speeds)]
            summary = {"best_val_accuracy": float(best_accuracy[i]), "best_epoch": int(best_epoch[i]),
                       "history": epochs, "epoch_seconds": float(np.mean(seconds)) if seconds else 0.0,
                       "train_samples_per_s": float(np.mean(speeds)) if speeds else 0.0,
                       "n_train": self.train.n, "n_val": self.val.n, "trained_on": str(self.device),
                       "tf32_products": self.tf32, "stacked_with": len(self.jobs), "stack_shape": self.shape,
                       "validation": job.settings.validation}
            model = self.net.member(i, self.best)
            cached("multimodal", model_config(job.spec, job.settings),
                   lambda folder, m=model, s=summary, j=job: save_trained(folder, j.spec, m, s))
        self.checkpoint.unlink(missing_ok=True)


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
        if deadline is not None and now > deadline:
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
            median = float(np.median(seconds))
            steps = len(history) * trainer.steps_per_epoch
            parameters = sum(p.numel() for p in trainer.net.parameters())
            speeds.setdefault(trainer.shape, []).append(
                {"models": len(trainer.jobs), "epochs": len(seconds), "epoch_seconds": median,
                 "model_epochs_per_s": len(trainer.jobs) / median,
                 "product_flops": len(history) * trainer.train.n * sum(product_flops(j.spec) for j in trainer.jobs),
                 "optimiser_bytes": steps * ADAM_BYTES_PER_PARAMETER * parameters})
    return speeds

