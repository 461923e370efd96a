"""The report's claims table: the multimodal study's claims, each checked under the study's
validation protocol and under ours (snnbench.benchmarks.claims), and the conversion study's."""

import json
import math

from snnbench.benchmarks import claims
from snnbench.benchmarks.multimodal_grid import STUDY_DOCUMENT
from snnbench.reporting.context import dnn_and_snn, latest_conversion, markdown_table, scale_line

NO_STUDY_RUNS = ("_No multimodal_study runs yet: run it under both protocols (`--validation study` and "
                 "`--validation recordings`)._")
PROTOCOLS = (("study", "the study's protocol (validation recordings also in training; best validation accuracy)"),
             ("ours", "ours (held-out recordings; test accuracy)"))


def study_document(run) -> dict | None:
    """A multimodal_study run's results document (older runs logged it as results.json)."""
    for artifact in (STUDY_DOCUMENT, "results.json"):
        text = run.artifact_text(artifact)
        if text:
            document = json.loads(text)
            if isinstance(document, dict) and "runs" in document:
                return document
    return None


def pooled_study_runs(ctx, validation: str) -> list:
    """The multimodal_study runs whose seeds a protocol's claims read, newest first: the newest finished
    run of that protocol (a full-profile one when there is one) and every finished run of the same settings
    (its params but :data:`claims.POOLING_IGNORES`)."""
    newest = ctx.store.latest("multimodal_study", where=lambda r: r.params.get("validation") == validation)
    if newest is None:
        return []

    def settings(run) -> dict:
        return {k: v for k, v in run.params.items() if k not in claims.POOLING_IGNORES}

    return [r for r in ctx.store.finished("multimodal_study") if settings(r) == settings(newest)]


def _estimate(part: dict, seeds: int) -> str:
    """A part's estimate; its seed count where fewer seeds measure it than the claim read."""
    if part["mean"] != part["mean"]:
        return f"{part['part']}: not measured"
    low, high = part["range"]
    claimed = f">= {low:g}" if high == float("inf") else f"{low:g} .. {high:g}"
    interval = f" [{part['ci_low']:.2f}, {part['ci_high']:.2f}]" if part["ci_low"] == part["ci_low"] else ""
    count = f", {part['seeds']} seed{'s' if part['seeds'] > 1 else ''}" if part["seeds"] < seeds else ""
    return f"{part['part']}: {part['mean']:.2f}{interval}{count} (claimed {claimed})"


def claims_lines(ctx) -> list:
    """The claims section: one row per claim, our estimate and verdict under each protocol."""
    lines = ["## The studies' claims, checked", "",
             "Each claim is split into parts; a part is one quantity computed per model seed (an accuracy, or a "
             "difference between models trained with the same seed) and the range the claim's words put it in "
             "(\"about v%\": v +- 1 point; \"loses about d points\": d +- max(1, d/5); \"markedly\" / \"by far\": at "
             "least 2 / 5 points; \"beats\", \"hurts less\": above 0). Our estimate: the mean over the seeds with "
             "its t-interval, clipped to the values the quantity can take (an accuracy within 0-100, a spread at "
             "least 0); a claim's seeds under each protocol follow its text (every run of the protocol's "
             "settings pooled, each configuration's seed once), and a part measured on fewer says how many. A part "
             "**holds** when the whole interval lies in the range, **does not hold** when it lies wholly outside, and **cannot be told apart** otherwise; a claim holds when every part "
             "does and does not hold when any part does not (snnbench.benchmarks.claims). Clean accuracies are "
             "best validation accuracy under the study's protocol and test accuracy under ours; accuracies under"
             " noise are test accuracies in both; \"std 0.1\" claims are read after the activation (post).", ""]
    checked, runs, repeats = {}, [], {}
    for protocol, _ in PROTOCOLS:
        pooled = [(run, study_document(run)) for run in pooled_study_runs(ctx, "study" if protocol == "study"
                                                                           else "recordings")]
        pooled = [(run, document) for run, document in pooled if document is not None]
        if pooled:
            for run, _ in pooled:
                ctx.use(run)
                runs.append(run)
            rows, repeats[protocol] = claims.pooled([document["runs"] for _, document in pooled])
            checked[protocol] = {c["claim"]: c for c in claims.check(rows, protocol)}
    conversion = conversion_claim(ctx)
    if not runs and conversion is None:
        return lines + [NO_STUDY_RUNS, ""]
    rows, differ = [], []
    for claim in claims.CLAIMS:
        row = [str(claim.number), claim.figure, claim.text]
        verdicts, seeds = [], []
        for protocol, _ in PROTOCOLS:
            entry = checked.get(protocol, {}).get(claim.number)
            if entry is None:
                row += ["not run", "–"]
                continue
            row += ["; ".join(_estimate(p, entry["seeds"]) for p in entry["parts"]), f"**{entry['verdict']}**"]
            verdicts.append(entry["verdict"])
            seeds.append(f"{entry['seeds']} {protocol}")
        row[2] += f" (seeds: {', '.join(seeds)})" if seeds else ""
        if len(set(verdicts)) > 1:
            differ.append(str(claim.number))
        rows.append(row)
    if conversion:
        rows.append(conversion)
    header = ["#", "fig.", "claim"]
    for protocol, label in PROTOCOLS:
        header += [f"measured, {label}", f"verdict ({protocol})"]
    lines += markdown_table(header, rows) + [""]
    for protocol, count in repeats.items():
        if count:
            lines += [f"Seeds trained again by a later run of the same settings ({protocol}): {count} rows counted "
                      "once, from the newest run.", ""]
    if differ:
        lines += [f"Verdicts that differ between the protocols: claims {', '.join(differ)}. Under the study's protocol "
                  "the validation recordings also occur in training, so its clean figures measure recall of seen "
                  "recordings; ours hold them out and score the test split.", ""]
    return lines + ([scale_line(runs), ""] if runs else [NO_STUDY_RUNS, ""])


def _loss(dnn: dict, snn: dict) -> tuple[float, float, float]:
    """DNN - SNN accuracy (points) with its 95% interval: the paired one on the same images, where the
    run logged it; else (older runs) the two Wilson intervals combined as if independent (wider)."""
    loss = 100 * (dnn["accuracy"] - snn["accuracy"])
    low, high = snn.get("paired_loss_ci_low"), snn.get("paired_loss_ci_high")
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        return loss, 100 * low, 100 * high
    half = [(r["accuracy_ci_high"] - r["accuracy_ci_low"]) / 2 for r in (dnn, snn)]
    spread = 100 * (half[0] ** 2 + half[1] ** 2) ** 0.5
    return loss, loss - spread, loss + spread


def conversion_claim(ctx, tolerance: float = 0.5) -> list | None:
    """The conversion study's claim as a table row: its figures, ours by method, and the verdict on
    "the loss comes from the neuron parameters the conversion leaves untrained": holds when our
    reference conversion loses clearly more than ``tolerance`` points and a method that sets those
    parameters (calibrated, corrected, tuned) loses at most ``tolerance``; does not hold when none does.
    Every method is read at the reference run's time steps (else at its own run's steps)."""
    measured, best, steps = [], None, None
    for method in ("reference", "calibrated", "corrected", "tuned"):
        run = latest_conversion(ctx.store, method=method)
        table = run.table("results.json") if run else None
        if table is None or table.empty:
            continue
        dnn, snn = dnn_and_snn(table.to_dict("records"))
        own = int(run.params.get("steps", snn[-1]["steps"]))
        steps = steps or own  # like with like: every method at the first (reference) run's steps
        by_steps = {int(r["steps"]): r for r in snn}
        at = by_steps.get(steps) or by_steps.get(own, snn[-1])
        loss, low, high = _loss(dnn, at)
        measured.append((method, at["steps"], loss, low, high))
        ctx.use(run)
        if method != "reference" and (best is None or high < best[2]):
            best = (loss, low, high)
    if not measured:
        return None
    reference = next((m for m in measured if m[0] == "reference"), None)
    verdict = claims.VERDICTS[2]
    if reference and best and reference[3] > tolerance and best[2] <= tolerance:
        verdict = claims.VERDICTS[0]
    elif reference and best and best[1] > tolerance:
        verdict = claims.VERDICTS[1]
    text = "; ".join(f"{m} at {s} steps: loss {loss:.2f} [{low:.2f}, {high:.2f}]" for m, s, loss, low, high in measured)
    claim = ("conversion study: DNN 91.32% -> SNN 87.67% (loss 3.65 points), the loss blamed on the neuron parameters "
             "the conversion leaves untrained")
    same = "same (MNIST has no validation protocol choice)"
    return ["C", "–", claim, text, f"**{verdict}**", same, f"**{verdict}**"]
