"""``snnbench robustness``: the noise sweep over every registered perturbation family, and the verdicts.

The very sweep of :mod:`~snnbench.benchmarks.noise_sweep` (its options, models, children and tables),
with ``--perturbations all`` by default and its parent run in the ``robustness`` experiment: per family
and level a child per engine and model, the families' cells, paired DNN-vs-SNN gaps and summary (mean
accuracy, drop, corruption error against the DNN), the accuracy-vs-level figures per family kind, and
the literature's robustness claims decided from paired intervals (:mod:`~snnbench.benchmarks.robustness_claims`).
"""

from snnbench.benchmarks import noise_sweep

BENCHMARK = "robustness"


Options = noise_sweep.options_class("RobustnessOptions", "all")
OPTIONS = {BENCHMARK: Options}


def run(options: Options):
    noise_sweep.run(options, BENCHMARK)
