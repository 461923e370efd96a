"""The literature's robustness claims, each decided from the paired per-sample results of one sweep.

"The SNN holds up better than its DNN" under a perturbation is read as: the DNN's accuracy drop minus
the SNN's, in points, on the same test samples. Per sample and repeat (model seed, noise seed), with
both engines' clean children of the same model seed:
``(dnn_clean - dnn_perturbed) - (snn_clean - snn_perturbed)`` (each 1 where right, 0 where wrong),
averaged over the levels the claim reads and the repeats, then over the samples with a paired-bootstrap
95% interval (:func:`snnbench.evaluation.metrics.paired_difference`). Positive: the SNN lost less. The
drop, not the accuracy under the perturbation, so that the conversion's own loss (the clean gap) does
not decide a robustness claim.

A part where the perturbation takes both engines down to at most :data:`SATURATED` of their clean accuracy
is **saturated**: both are fooled on (nearly) every sample, and the drop difference would read their
clean gap, not their robustness. It is listed with its estimate and left out of the claim's verdict (a
claim whose parts are all saturated cannot be told apart).

A claim reads one family against the ORT DNN and one SNN of the same model (its conversion to Nengo or
the Loihi emulator, or the suite's snntorch SNN of the same modality), one part per (model, modality).
A part **holds** when its whole interval lies above 0, **does not hold** when it lies at or below 0, and
**cannot be told apart** otherwise (:func:`snnbench.benchmarks.claims.part_verdict`); a claim combines its
parts as the study's claims do (:func:`snnbench.benchmarks.claims.combined`). A claim without a part that
ran is :data:`NOT_RUN`, with the reason.

The claims come from the registry (:mod:`snnbench.perturbations`), so new families bring theirs: every
family that is neither Gaussian noise (the noise tables and the study's claims read it) nor an input
corruption, for each SNN, over every level it ran (faults: Schuman et al., IJCNN 2020; Spyrou et al.,
DATE 2021; El-Allami et al., DATE 2021); an ``attack`` family at each budget on its own (Sharmin et al.,
IJCNN 2019 and ECCV 2020): crafted on the DNN and transferred to the SNN, or white-box on the snntorch
SNN through its surrogate against the same attack white-box on the DNN (Xu et al. 2022).
"""

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from snnbench import perturbations
from snnbench.engines import ORT_DNN, NENGO_SNN, SNNTORCH_SNN
from snnbench.benchmarks import noise_sweep_perturbations as perturbed
from snnbench.benchmarks import noise_sweep_tables as tables
from snnbench.benchmarks.claims import VERDICTS, combined, part_verdict
from snnbench.benchmarks.noise_sweep_models import SweepSettings
from snnbench.errors import SnnbenchError
from snnbench.evaluation import plots
from snnbench.evaluation.metrics import paired_difference
from snnbench.tracking import summary as run_summary

NOT_RUN = "not run"
DNN = ORT_DNN
SNNS = tuple(snn for dnn, snn in tables.PAIRS if dnn == DNN)  # the SNNs compared with their DNN
ALWAYS_CLAIMED = (NENGO_SNN, SNNTORCH_SNN)  # the SNNs claims are read for even where they did not run
UNCLAIMED_KINDS = ("noise", "input")  # read by the noise tables and the per-family comparisons, not claimed
ATTACK = "attack"
BETTER = (float(np.nextafter(0.0, 1.0)), float("inf"))  # "holds up better": a drop difference above 0
SATURATED = 0.1  # a part is saturated where both engines keep at most this share of their clean accuracy
VERDICT_TABLE = "robustness_verdicts.json"
COMPARISON_TABLE = "robustness_comparisons.json"
CELLS = "perturbation_cells.json"  # the families' cells (noise_sweep_perturbations) the figures read


def _same_level(a: float, b: float) -> bool:
    return perturbations.level_key(a) == perturbations.level_key(b)


@dataclass(frozen=True)
class Claim:
    """"The SNN holds up better than its DNN" under ``family`` (at ``level``; None: every level that ran).
    ``dnn_family``: the family whose children the DNN's side reads (a white-box attack on the SNN is held
    against the same attack white-box on the DNN); None: ``family`` for both."""
    family: str
    snn: str
    level: float | None = None
    dnn_family: str | None = None

    @property
    def kind(self) -> str:
        return perturbed.family(self.family).kind

    @property
    def text(self) -> str:
        what = perturbed.family(self.family)
        at = f" at {what.level_name} {self.level:g}" if self.level is not None else ""
        if self.dnn_family:
            return (f"{self.snn} under {self.family} holds up better than its DNN under {self.dnn_family}{at} "
                    "(each white-box)")
        crafted = " (crafted on the DNN)" if what.kind == ATTACK else ""
        return f"{self.snn} holds up better than its DNN under {self.family}{at}{crafted}"


def kind_of(name: str) -> str:
    """A family's kind; a family a stored run swept that this version does not register: unknown."""
    try:
        return perturbed.family(name).kind
    except SnnbenchError:
        return "unknown"


def attack_source(name: str) -> str:
    """The model attack ``name`` is crafted on, in words."""
    family = perturbed.family(name)
    return "the DNN" if family.source == "dnn" else f"the snntorch SNN ({family.surrogate} surrogate)"


def _crafted_on_snn(name: str) -> bool:
    """Whether attack family ``name`` is crafted white-box on the snntorch SNN (its ``source``: snn_<surrogate>)."""
    return perturbed.family(name).source != "dnn"


def _white_box_counterpart(name: str) -> str | None:
    """The family that runs attack ``name`` (crafted on the SNN) white-box on the DNN: the same method and
    norm crafted on the DNN, else None."""
    mine = perturbed.family(name)
    return next((other for other in perturbations.names() if (family := perturbed.family(other)).kind == ATTACK
                 and family.source == "dnn" and (family.method, family.norm) == (mine.method, mine.norm)), None)


def claims(snns=ALWAYS_CLAIMED, profile: str = "quick", ran: dict | None = None) -> list[Claim]:
    """Every claim the registry's families make, for each SNN of ``snns``: an attack's at each budget the
    profile sweeps or ``ran`` (family -> levels) holds."""
    out = []
    for name in perturbations.names():
        family = perturbed.family(name)
        if family.kind in UNCLAIMED_KINDS:
            continue
        if family.kind != ATTACK:
            out += [Claim(name, snn) for snn in snns]
            continue
        levels = sorted({float(v) for v in (*family.profile_levels(profile), *(ran or {}).get(name, ()))})
        for level in levels:
            if not _crafted_on_snn(name):
                out += [Claim(name, snn, level) for snn in snns]
            else:  # white-box on the snntorch SNN: held against the same attack white-box on the DNN
                out.append(Claim(name, SNNTORCH_SNN, level, _white_box_counterpart(name)))
    return out


@dataclass
class Correctness:
    """Each child's per-sample correctness, indexed for the paired differences: clean children by
    (engine, model, modality) and model seed; perturbed ones by (engine, model, modality, family) and
    (level, model seed, noise seed)."""
    clean: dict
    perturbed: dict

    @classmethod
    def of(cls, rows: list) -> "Correctness":
        clean, perturbed_ = {}, {}
        for r in rows:
            cell = (r["engine"], r["model"], r["modality"])
            if r["perturbation"] == "none":
                clean.setdefault(cell, {})[r["model_seed"]] = np.asarray(r["correct"], np.float64)
            elif r["perturbation"] != "gaussian":
                perturbed_.setdefault((*cell, r["perturbation"]), {})[
                    (float(r["level"]), r["model_seed"], r["noise_seed"])] = np.asarray(r["correct"], np.float64)
        return cls(clean, perturbed_)

    def parts(self, dnn: str, snn: str, family: str, dnn_family: str | None = None) -> list:
        """The (model, modality) pairs on which both engines ran their family."""
        return [cell[1:3] for cell in self.perturbed
                if cell[0] == snn and cell[3] == family and (dnn, *cell[1:3], dnn_family or family) in self.perturbed]

    def drop_difference(self, dnn: str, snn: str, model: str, modality: str, family: str, level: float | None = None,
                        dnn_family: str | None = None, seed: int = 0) -> dict | None:
        """The DNN's drop minus the SNN's (points) with its paired 95% interval, over the levels (or the one
        ``level``) and repeats both ran; None where they share none."""
        ours = self.perturbed.get((snn, model, modality, family), {})
        theirs = self.perturbed.get((dnn, model, modality, dnn_family or family), {})
        clean_dnn, clean_snn = self.clean.get((dnn, model, modality), {}), self.clean.get((snn, model, modality), {})
        keys = sorted(k for k in ours.keys() & theirs.keys()
                      if (level is None or _same_level(k[0], level)) and k[1] in clean_dnn and k[1] in clean_snn)
        if not keys:
            return None
        dnn_drops = [clean_dnn[k[1]] - theirs[k] for k in keys]
        snn_drops = [clean_snn[k[1]] - ours[k] for k in keys]
        mean, low, high = paired_difference(dnn_drops, snn_drops, seed=seed)
        clean = {side: float(np.mean([acc[k[1]] for k in keys])) for side, acc in (("dnn", clean_dnn),
                                                                                   ("snn", clean_snn))}
        kept = {"dnn": float(np.mean([theirs[k] for k in keys])), "snn": float(np.mean([ours[k] for k in keys]))}
        return {"levels": ", ".join(f"{v:g}" for v in sorted({k[0] for k in keys})), "repeats": len(keys),
                "n": len(dnn_drops[0]), "clean_dnn": clean["dnn"], "clean_snn": clean["snn"],
                "drop_dnn_pp": 100 * float(np.mean(dnn_drops)),
                "drop_snn_pp": 100 * float(np.mean(snn_drops)), "difference_pp": 100 * mean,
                "ci_low_pp": 100 * low, "ci_high_pp": 100 * high,
                "saturated": all(kept[side] <= SATURATED * clean[side] for side in kept),
                "verdict": part_verdict(100 * low, 100 * high, *BETTER)}


def comparisons(rows: list, seed: int = 0) -> list[dict]:
    """Per family (every one besides Gaussian noise), SNN and (model, modality): which engine holds up
    better over every level the family ran, the paired drop difference and its verdict."""
    index = Correctness.of(rows)
    out = []
    for (engine, model, modality, name) in index.perturbed:
        if engine not in SNNS:
            continue
        found = index.drop_difference(DNN, engine, model, modality, name, seed=seed)
        if found:
            better = ("neither (both saturated)" if found["saturated"] else engine if found["ci_low_pp"] > 0
                      else DNN if found["ci_high_pp"] < 0 else "neither (cannot be told apart)")
            out.append({"kind": perturbed.family(name).kind, "perturbation": name, "dnn": DNN, "snn": engine,
                        "model": model, "modality": modality, **found, "holds_up_better": better})
    return out


def _not_run(claim: Claim, settings: SweepSettings, subjects: list) -> str:
    """Why a claim has no part (one line)."""
    asked = settings.perturbations
    for name in dict.fromkeys(filter(None, (claim.family, claim.dnn_family))):
        if name not in asked:
            return f"{name} was not in --perturbations"
    if claim.kind == ATTACK and claim.dnn_family is None and _crafted_on_snn(claim.family):
        return f"no attack white-box on the DNN to hold {claim.family} against"
    for engine in (DNN, claim.snn):
        if engine not in settings.families:
            return f"--families had no {engine}"
    for engine, name in ((claim.snn, claim.family), (DNN, claim.dnn_family or claim.family)):
        mine = [s for s in subjects if s.family == engine]
        why = [perturbed.refusal(name, s, settings) for s in mine]
        if mine and all(why):
            return f"refused: {why[0]}"
    family = perturbed.family(claim.family)
    swept = family.profile_levels(settings.profile)
    if claim.level is not None and not any(_same_level(claim.level, v) for v in swept):
        return (f"{family.level_name} {claim.level:g} was not swept (the {settings.profile} profile's: "
                f"{', '.join(f'{v:g}' for v in swept)})")
    return f"no model on which both {DNN} and {claim.snn} ran {claim.family}"


def verdicts(rows: list, settings: SweepSettings, subjects: list) -> list[dict]:
    """One row per claim part (a claim that did not run: one row saying why), each with the claim's verdict."""
    index = Correctness.of(rows)
    snns = [*ALWAYS_CLAIMED, *(s for s in SNNS if s not in ALWAYS_CLAIMED and s in settings.families)]
    ran = {}
    for r in rows:
        ran.setdefault(r["perturbation"], set()).add(float(r["level"]))
    out = []
    for claim in claims(snns, settings.profile, ran):
        head = {"claim": claim.text, "family": claim.family, "kind": claim.kind, "dnn": DNN, "snn": claim.snn,
                "dnn_family": claim.dnn_family or claim.family,
                "level": claim.level if claim.level is not None else float("nan")}
        parts = []
        for model, modality in index.parts(DNN, claim.snn, claim.family, claim.dnn_family):
            found = index.drop_difference(DNN, claim.snn, model, modality, claim.family, claim.level,
                                          claim.dnn_family, settings.seed)
            if found:
                parts.append({"model": model, "modality": modality, **found})
        if not parts:
            out.append({**head, "verdict": NOT_RUN, "not_run": _not_run(claim, settings, subjects)})
            continue
        informative = [p["verdict"] for p in parts if not p["saturated"]]
        verdict = combined(informative) if informative else VERDICTS[2]
        out += [{**head, "verdict": verdict, **{f"part_{k}" if k == "verdict" else k: v for k, v in p.items()},
                 "not_run": ""} for p in parts]
    return out


def claim_rows(table: list) -> list[dict]:
    """The verdict table with one row per claim: its verdict, the engines, the levels read and each part's
    estimate (points, DNN's drop minus the SNN's [95% interval]), or why it did not run."""
    out = {}
    for r in table:
        entry = out.setdefault(r["claim"], {"claim": r["claim"], "family": r["family"], "snn": r["snn"],
                                            "verdict": r["verdict"], "levels": [], "measured": []})
        if r["verdict"] == NOT_RUN:
            entry["measured"].append(f"not run: {r['not_run']}")
            continue
        entry["levels"].append(r["levels"] if isinstance(r["levels"], str) else f"{r['levels']:g}")  # one level: a number
        saturated = r.get("saturated") in (True, 1)  # a stored table may lack the column
        entry["measured"].append(f"{r['model']}/{r['modality']}: "
                                 + run_summary.interval(r["difference_pp"], r["ci_low_pp"], r["ci_high_pp"], scale=1,
                                                        digits=2, sign="+")
                                 + (" (both saturated: left out)" if saturated else ""))
    return [{**e, "levels": "; ".join(dict.fromkeys(e["levels"])) or "–", "measured": "; ".join(e["measured"])}
            for e in out.values()]


def figures(cells: list, folder: Path, title: str) -> list[Path]:
    """Accuracy vs level, one figure per family kind, a panel per family, a line per engine, model and
    modality starting from its clean accuracy (cells: the families' cells, as ``perturbation_cells.json``
    holds them)."""
    clean = {(c["engine"], c["model"], c["modality"]): c["accuracy"] for c in cells if c["perturbation"] == "none"}
    paths, kinds = [], {}
    for c in cells:
        if c["perturbation"] not in ("none", "gaussian") and kind_of(c["perturbation"]) != "unknown":
            kinds.setdefault(kind_of(c["perturbation"]), []).append(c)
    for kind, mine in kinds.items():
        panels = {}
        for c in sorted(mine, key=lambda c: c["level"]):
            key = (c["engine"], c["model"], c["modality"])
            panel = panels.setdefault(f"{c['perturbation']} ({perturbed.family(c['perturbation']).level_name})", {})
            xs, ys = panel.setdefault(f"{c['engine']} {c['model']}/{c['modality']}",
                                      (["clean"], [100 * clean[key]]) if key in clean else ([], []))
            xs.append(f"{c['level']:g}")
            ys.append(100 * c["accuracy"])
        paths.append(plots.line_panels(panels, folder / f"accuracy_vs_level_{kind}.png", xlabel="level",
                                       ylabel="test accuracy (%)", title=f"{title}: {kind} perturbations",
                                       categorical=True))
    return paths


def log_results(rows: list, settings: SweepSettings, subjects: list, folder: Path) -> None:
    """The verdicts, the per-family comparisons and the accuracy-vs-level figures on the active (parent) run,
    and the verdicts in its summary; nothing for a sweep of Gaussian noise alone."""
    if not any(r["perturbation"] not in ("none", "gaussian") for r in rows):
        return
    rows = tables.with_correct(rows)
    table = verdicts(rows, settings, subjects)
    mlflow.log_table(pd.DataFrame(table), VERDICT_TABLE)
    found = comparisons(rows, settings.seed)
    if found:
        mlflow.log_table(pd.DataFrame(found), COMPARISON_TABLE)
    run = mlflow.active_run().info
    cells = mlflow.MlflowClient().load_table(run.experiment_id, CELLS, run_ids=[run.run_id]).to_dict("records")
    for path in figures(cells, folder, f"{settings.profile} profile"):
        mlflow.log_artifact(str(path))
    per_claim = claim_rows(table)
    mlflow.log_metrics({f"claims.{verdict.replace(' ', '_')}": sum(c["verdict"] == verdict for c in per_claim)
                        for verdict in (*VERDICTS, NOT_RUN)})
    run_summary.headline("Robustness claims: DNN's accuracy drop minus the SNN's, points [95% paired interval]; "
                         "above 0: the SNN holds up better",
                         [{k: c[k] for k in ("claim", "levels", "measured", "verdict")} for c in per_claim
                          if c["verdict"] != NOT_RUN])
    run_summary.headline("Robustness claims not run", not_run(table))


def not_run(table: list) -> list[dict]:
    """The claims that did not run, one row per family and reason: the SNNs and levels it left out."""
    out = {}
    for r in table:
        if r["verdict"] == NOT_RUN:
            entry = out.setdefault((r["family"], r["not_run"]), {"family": r["family"], "snns": {}, "levels": {}})
            entry["snns"][r["snn"]] = None
            if r["level"] == r["level"]:
                entry["levels"][f"{r['level']:g}"] = None
    return [{"family": e["family"], "SNNs": ", ".join(e["snns"]), "levels": ", ".join(e["levels"]) or "all",
             "why": why} for (_, why), e in out.items()]
