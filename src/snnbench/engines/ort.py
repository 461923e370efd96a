"""Engine ``ort-dnn``: a feed-forward DNN in ONNX Runtime.

:class:`OrtRunner` is one inference session, run in batches (``predict(x, start=0) -> logits``
for flat float32 inputs ``(n, features)``; ``start``, the global index of ``x[0]``, keys the noise
feeds, so a sample gets the same noise in every batch layout). :class:`OrtModel` is the harness
model: noise inserted into a copy of the graph (snnbench.conversion.onnx_noise), and, with
``activity``, its hidden ReLU outputs read as extra graph outputs for the activity metrics.
"""

from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from snnbench.conversion.graph import INPUT
from snnbench.engines import register
from snnbench.errors import DataError, UnsupportedModelError
from snnbench.evaluation import metrics as M
from snnbench.evaluation.harness import CLEAN, Model


class OrtRunner:
    """ONNX Runtime inference in batches; ``feeds(start, n)`` adds extra inputs (e.g. noise)."""

    def __init__(self, model: str | Path | bytes, batch_size: int = 1000, intra_op_threads: int | None = None,
                 feeds: Callable[[int, int], dict] | None = None):
        options = ort.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for unreadable models
            raise UnsupportedModelError(f"ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:200]}); "
                                        "check the .onnx file") from None
        declared = self.session.get_inputs()[0]
        self.input_name = declared.name
        # the declared per-sample shape, e.g. (1, 28, 28) or (784,); None where a dimension is symbolic
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in declared.shape[1:])
        static = declared.shape[0] if isinstance(declared.shape[0], int) and declared.shape[0] > 0 else None
        self.static_batch = static  # an export with a static batch size runs in batches of exactly that size
        self.batch_size = static or batch_size
        self.feeds = feeds

    def shaped(self, x: np.ndarray) -> np.ndarray:
        """``x`` (flat ``(n, features)`` or already in the declared layout) in the model's declared
        input layout, as float32; one-line DataError when the sizes disagree."""
        x = np.asarray(x, dtype=np.float32)
        if None in self.input_shape:  # symbolic feature dimensions: feed as given
            return x
        if x.shape[1:] == self.input_shape:
            return x
        features = int(np.prod(self.input_shape))
        if x.ndim < 1 or int(np.prod(x.shape[1:])) != features:
            raise DataError(f"the model's input {self.input_name!r} takes {features} features per sample "
                            f"(shape {self.input_shape}) but got inputs of shape {x.shape}; pass an "
                            f"(n, {features}) array")
        return x.reshape(len(x), *self.input_shape)

    def predict(self, x: np.ndarray, start: int = 0) -> np.ndarray:
        return self.predict_outputs(x, start)[0]

    def predict_outputs(self, x: np.ndarray, start: int = 0) -> list[np.ndarray]:
        """Every graph output (the logits first), concatenated over batches."""
        batches = []
        for a in range(0, len(x), self.batch_size):
            xb = np.ascontiguousarray(self.shaped(x[a: a + self.batch_size]))
            n = len(xb)
            if self.static_batch and n < self.static_batch:  # the last batch, padded with zeros
                xb = np.concatenate([xb, np.zeros((self.static_batch - n, *xb.shape[1:]), xb.dtype)])
            extra = self.feeds(start + a, len(xb)) if self.feeds else {}
            batches.append([out[:n] for out in self.session.run(None, {self.input_name: xb, **extra})])
        if not batches:
            return [np.zeros((0, 0), np.float32)]
        return [np.concatenate(parts) for parts in zip(*batches)]


class OrtModel(Model):
    """A feed-forward ONNX DNN. Activity (with ``activity``): its ReLU outputs (nonzero
    activations, effective MACs); without, the graph runs as it is (for timing)."""
    engine = "ort-dnn"

    def __init__(self, onnx_path, batch_size: int = 1000, threads: int | None = None, activity: bool = True):
        self.path = Path(onnx_path)
        self.batch_size, self.threads, self.activity = batch_size, threads, activity
        self._runners = {}
        self._converted = None
        if activity:  # weights and fan-outs; unsupported ops fail here
            self._fan_outs = [self.converted.fan_out(i) for i in range(INPUT, len(self.converted.hidden))]

    @property
    def converted(self):
        """The network's layers (one population per ONNX Relu: MaxPool read as its window's
        connectivity, not as the exact route's extra populations)."""
        if self._converted is None:
            from snnbench.conversion import onnx_io

            self._converted = onnx_io.extract(self.path, maxpool="average")
        return self._converted

    def _runner(self, position: str):
        """A runner of the graph (with noise inputs at ``position``; with ``activity``, also
        outputting every hidden activation)."""
        if position not in self._runners:
            import onnx
            from onnx import helper

            from snnbench.conversion.onnx_noise import add_noise, hidden_activations

            graph = add_noise(self.path, position) if position != "none" else None
            if graph is None and not self.activity:
                source = self.path
            else:
                proto = graph.model if graph else onnx.load(str(self.path))
                if self.activity:
                    hidden = [n.output[0] for n in hidden_activations(proto)]
                    proto.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in hidden)
                source = proto.SerializeToString()
            self._runners[position] = (OrtRunner(source, self.batch_size, self.threads), graph)
        return self._runners[position]

    def predict(self, x, noise=CLEAN, start=0):
        runner, graph = self._runner(noise.position if noise.active else "none")
        if graph is not None:
            runner.feeds = graph.feeds(noise)
        outputs = runner.predict_outputs(x, start)
        if not self.activity:
            self.last_activity = None
            return outputs[0]
        logits, hidden = outputs[0], [h.reshape(len(x), -1) for h in outputs[1:]]
        nonzero = [h != 0 for h in hidden]
        macs = float(((np.asarray(x) != 0) @ self._fan_outs[0]).sum())
        macs += sum(float((a @ f).sum()) for a, f in zip(nonzero, self._fan_outs[1:]))
        active = float(sum(a.sum() for a in nonzero))
        self.last_activity = M.Activity(len(x), 1, sum(h.shape[1] for h in hidden), active, active, macs, 0.0,
                                        0.0, float(self.converted.macs()))
        return logits


@register("ort-dnn")
def build(artifact, batch_size: int = 1000, threads: int | None = None, activity: bool = True) -> OrtModel:
    path = Path(artifact)
    return OrtModel(path / "model.onnx" if path.is_dir() else path, batch_size, threads, activity)
