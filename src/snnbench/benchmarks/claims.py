"""The multimodal study's claims, each checked against a ``multimodal_study`` run's results.

A claim is made of parts; a part is one quantity per model seed (an accuracy in points, or a difference
of accuracies of models trained with the same seed) and the range the claim puts it in. Its estimate is
the mean over seeds with a Student-t 95% interval; the part ``holds`` when the whole interval lies inside
the range, ``does not hold`` when it lies wholly outside, and ``cannot be told apart`` otherwise. A claim
holds when all its parts hold, does not hold when any part does not, and cannot be told apart otherwise.

Seeds are added by further runs of the same settings (``multimodal_study --seeds 3,4,...``): :func:`pooled`
joins their rows, each configuration's seed once, and a part's estimate reads every seed it has.

Words read as ranges: "about v %" is v +- 1 point (capped at 100); "loses about d points" is
d +- max(1, d / 5); "markedly" and "by far" are at least 2 and 5 points; "hurts less" / "beats" is a
difference above 0. Under the study's protocol (``--validation study``) a clean accuracy is the training's
best validation accuracy, as the study reports; under ours it is the test accuracy. Accuracies under noise
are test accuracies in both. Noise "std 0.1" claims are read at the position the part names (``post``,
after the activation, unless the claim names both).
"""

from collections import namedtuple
from dataclasses import dataclass
from typing import Callable

import numpy as np

from snnbench.data import MODALITIES
from snnbench.models.multimodal import SIZES
from snnbench.evaluation.metrics import seed_interval

VERDICTS = ("holds", "does not hold", "cannot be told apart")
INF = float("inf")
CONFIGURATION = ("modality", "family", "size", "neuron", "reset", "steps")  # what a result row trains
# A multimodal_study run's params that may differ between runs whose seeds are pooled: which seeds and
# modalities it trained, how many trainings that made, and where and by which (result-neutral) route
# the grid trainer ran them. Every other param (profile, epochs, protocol, data limits, lr, tf32, noises)
# must be equal.
POOLING_IGNORES = ("seeds", "modalities", "trainings", "devices", "graphs", "scan", "side_by_side", "max_stack")


def about(value: float) -> tuple[float, float]:
    return value - 1.0, min(value + 1.0, 100.0)


def loses_about(points: float) -> tuple[float, float]:
    tolerance = max(1.0, points / 5)
    return points - tolerance, points + tolerance


@dataclass(frozen=True)
class Accuracy:
    """Accuracy (points) of one trained model of the grid, under a noise (``None``: clean)."""
    bounds = (0.0, 100.0)  # the values it can take: a seed interval is clipped to them
    modality: str
    family: str
    noise: str | None = None
    size: str = "S"
    neuron: str = "lif"
    reset: str = "soft"
    steps: int = 4

    def matches(self, row: dict) -> bool:
        keys = ("modality", "family", "size") + (() if self.family == "dnn" else ("neuron", "reset", "steps"))
        return all(row[k] == getattr(self, k) for k in keys)

    def __call__(self, rows: list, seed: int, protocol: str) -> float:
        row = next((r for r in rows if r["seed"] == seed and self.matches(r)), None)
        if row is None:
            return float("nan")
        if self.noise is None and protocol == "study":
            return 100 * row["best_val_accuracy"]
        return 100 * row[f"test/{self.noise or 'clean'}"]["accuracy"]


Quantity = Callable[[list, int, str], float]


def diff(a: Quantity, b: Quantity) -> Quantity:
    return lambda rows, seed, protocol: a(rows, seed, protocol) - b(rows, seed, protocol)


def spread(*quantities: Quantity) -> Quantity:
    """Largest minus smallest of several accuracies (the same seed): at least 0."""
    def largest_minus_smallest(rows, seed, protocol):
        return float(np.ptp([q(rows, seed, protocol) for q in quantities]))
    largest_minus_smallest.bounds = (0.0, INF)
    return largest_minus_smallest


def mean_of(*quantities: Quantity) -> Quantity:
    return lambda rows, seed, protocol: float(np.mean([q(rows, seed, protocol) for q in quantities]))


Part = namedtuple("Part", "label quantity low high")  # a quantity and the range [low, high] a claim puts it in
Claim = namedtuple("Claim", "number figure text parts")  # figure: the study's figure(s) it reads


def _sizes(modality, family, noise=None):
    return [Accuracy(modality, family, noise, size=s) for s in SIZES]


def _claims() -> tuple:
    A = Accuracy
    post = "post/0.1"
    return (
        Claim(1, "3", "DNN: multimodal stays at about 99% at S, S/2 and S/3; the unimodal DNNs range from about 99% "
                      "down to about 95% as size shrinks",
              tuple(Part(f"multimodal DNN {s}", A("multimodal", "dnn", size=s), *about(99)) for s in SIZES)
              + tuple(Part(f"{m} DNN at S / S/3", A(m, "dnn", size=s), *about(v))
                      for m in ("image", "audio") for s, v in (("S", 99), ("S/3", 95)))),
        Claim(2, "4", "SNN: audio stays within 2 points across sizes",
              (Part("audio SNN max - min over sizes", spread(*_sizes("audio", "snn")), 0, 2),)),
        Claim(3, "4", "SNN: multimodal stays at about 99.9% at every size, within 0.1 point across sizes",
              tuple(Part(f"multimodal SNN {s}", A("multimodal", "snn", size=s), *about(99.9)) for s in SIZES)
              + (Part("multimodal SNN max - min over sizes", spread(*_sizes("multimodal", "snn")), 0, 0.1),)),
        Claim(4, "4", "SNN: image drops markedly as the model shrinks",
              (Part("image SNN S - S/3", diff(A("image", "snn"), A("image", "snn", size="S/3")), 2, INF),)),
        Claim(5, "5", "at size S, multimodal beats the mean of the two unimodal models by far, for DNN and for SNN",
              tuple(Part(f"{f.upper()} multimodal - mean(image, audio)",
                         diff(A("multimodal", f), mean_of(A("image", f), A("audio", f))), 5, INF)
                    for f in ("dnn", "snn"))),
        Claim(6, "6", "noise std 0.1, DNN: multimodal stays at about 99.9% as size shrinks",
              tuple(Part(f"multimodal DNN {s}, post 0.1", A("multimodal", "dnn", post, size=s), *about(99.9))
                    for s in SIZES)),
        Claim(7, "7", "noise std 0.1, SNN: multimodal stays at about 99.9%; image is the lowest of the three and "
                      "loses about 4 points at S and about 25 at S/3 against no noise",
              tuple(Part(f"multimodal SNN {s}, post 0.1", A("multimodal", "snn", post, size=s), *about(99.9))
                    for s in SIZES)
              + tuple(Part(f"{m} SNN - image SNN, post 0.1", diff(A(m, "snn", post), A("image", "snn", post)), 0, INF)
                      for m in ("audio", "multimodal"))
              + tuple(Part(f"image SNN {s}: clean - post 0.1",
                           diff(A("image", "snn", size=s), A("image", "snn", post, size=s)), *loses_about(d))
                      for s, d in (("S", 4), ("S/3", 25)))),
        Claim(8, "8", "std 0.1 -> 5 at size S: audio loses about 70 points as a DNN but about 35 as an SNN; image 0.5 "
                      "as a DNN, 0.24 as an SNN (unimodal SNNs are more robust)",
              tuple(Part(f"{m} {f.upper()}: post 0.1 - post 5", diff(A(m, f, post), A(m, f, "post/5")), *loses_about(d))
                    for m, f, d in (("audio", "dnn", 70), ("audio", "snn", 35), ("image", "dnn", 0.5),
                                    ("image", "snn", 0.24)))),
        Claim(9, "8", "std 0.1 -> 5 at size S: the multimodal DNN stays at about 99%, the multimodal SNN loses about "
                      "9 points (multimodal DNNs are more robust)",
              (Part("multimodal DNN, post 5", A("multimodal", "dnn", "post/5"), *about(99)),
               Part("multimodal SNN: post 0.1 - post 5", diff(A("multimodal", "snn", post),
                                                               A("multimodal", "snn", "post/5")), *loses_about(9)))),
        Claim(10, "9, 10", "noise before the activation hurts less than after it, for every model, DNN and SNN "
                           "(size S, std 0.1)",
              tuple(Part(f"{m} {f.upper()}: pre 0.1 - post 0.1", diff(A(m, f, "pre/0.1"), A(m, f, post)), 0, INF)
                    for m in MODALITIES for f in ("dnn", "snn"))),
        Claim(11, "11", "soft reset beats hard reset for both unimodal SNNs, audio by more than 10 points; "
                        "multimodal about 99% either way, soft slightly higher",
              (Part("image SNN soft - hard", diff(A("image", "snn"), A("image", "snn", reset="hard")), 0, INF),
               Part("audio SNN soft - hard", diff(A("audio", "snn"), A("audio", "snn", reset="hard")), 10, INF),
               Part("multimodal SNN soft", A("multimodal", "snn"), *about(99)),
               Part("multimodal SNN hard", A("multimodal", "snn", reset="hard"), *about(99)),
               Part("multimodal SNN soft - hard", diff(A("multimodal", "snn"), A("multimodal", "snn", reset="hard")),
                    0, 1))),
        Claim(12, "12", "LIF and IF are within 0.2 points of each other",
              tuple(Part(f"{m} SNN LIF - IF", diff(A(m, "snn"), A(m, "snn", neuron="if")), -0.2, 0.2)
                    for m in MODALITIES)),
        Claim(13, "13", "4, 8 and 16 time steps are within 0.6 points of each other, per model",
              tuple(Part(f"{m} SNN max - min over 4, 8, 16 steps",
                         spread(*(A(m, "snn", steps=t) for t in (4, 8, 16))), 0, 0.6) for m in MODALITIES)),
    )


CLAIMS = _claims()


def part_verdict(low: float, high: float, range_low: float, range_high: float) -> str:
    if np.isfinite(low) and np.isfinite(high):
        if range_low <= low and high <= range_high:
            return VERDICTS[0]
        if high < range_low or low > range_high:
            return VERDICTS[1]
    return VERDICTS[2]


def combined(part_verdicts) -> str:
    """A claim's verdict from its parts': holds when every part holds, does not hold when any part does not."""
    verdicts = set(part_verdicts)
    return VERDICTS[1] if VERDICTS[1] in verdicts else VERDICTS[0] if verdicts == {VERDICTS[0]} else VERDICTS[2]


def pooled(runs: list[list]) -> tuple[list, int]:
    """The result rows of several runs of the same settings as one set of seeds, and how many rows were
    left out as repeats: a configuration's seed counts once, from the first run that has it (list the
    newest run first). Counting a seed twice would narrow its interval with no new model."""
    seen, rows = set(), []
    for run_rows in runs:
        for row in run_rows:
            key = (*(row[k] for k in CONFIGURATION), row["seed"])
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows, sum(map(len, runs)) - len(rows)


def check(rows: list, protocol: str) -> list[dict]:
    """One row per claim: each part's estimate (mean [95% interval] over the seeds that measure it, and
    how many), the seeds the claim read, and the verdict."""
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for claim in CLAIMS:
        parts = []
        for part in claim.parts:
            values = [part.quantity(rows, seed, protocol) for seed in seeds]
            values = [v for v in values if np.isfinite(v)]
            mean, low, high = seed_interval(values) if values else (float("nan"),) * 3
            # Student's t-interval is symmetric; a quantity's true mean lies within the values it can take
            floor, ceiling = getattr(part.quantity, "bounds", (-INF, INF))
            low, high = max(low, floor), min(high, ceiling)
            parts.append({"part": part.label, "mean": mean, "ci_low": low, "ci_high": high,
                          "range": [part.low, part.high], "seeds": len(values),
                          "verdict": part_verdict(low, high, part.low, part.high)})
        verdict = combined(p["verdict"] for p in parts)
        out.append({"claim": claim.number, "figure": claim.figure, "text": claim.text, "protocol": protocol,
                    "verdict": verdict, "seeds": max(p["seeds"] for p in parts), "parts": parts})
    return out
