"""The report's robustness section: per family kind, which engine holds up better with its paired
interval; the literature's robustness claims with their verdicts; which attacks reached which engines.
Read from the newest ``robustness`` run, else the newest ``noise_sweep`` run that swept families besides
Gaussian noise (snnbench.benchmarks.robustness_claims)."""

from snnbench.benchmarks import robustness_claims as rc
from snnbench.reporting.context import markdown_table, pct, scale_line, unreadable

COMMAND = "snnbench robustness"
INTRO = ("Each engine's accuracy drop under a perturbation family, against its own clean accuracy on the same "
         "test samples; the **difference** is the DNN's drop minus the SNN's (points, over the family's levels, "
         "noise seeds and model seeds; 95% paired-bootstrap interval over samples): above 0, the SNN holds up "
         "better. A claim \"the SNN holds up better than its DNN\" **holds** when every part's interval (a model "
         "and modality) lies above 0, **does not hold** when any lies at or below 0, and **cannot be told apart** "
         "otherwise; an attack's claim is read at each budget, a white-box attack on the snntorch SNN (through a "
         "surrogate gradient) against the same attack white-box on the DNN. Input corruptions are compared, not "
         "claimed; Gaussian noise is in the noise sweep's section. An SNN near chance on clean samples has little to "
         "lose: read the clean accuracies beside the drops.")


def _run(ctx):
    """The newest robustness run, else the newest noise sweep whose families the claims were read from."""
    run = ctx.store.latest("robustness")
    if run is None:
        run = ctx.store.latest("noise_sweep", where=lambda r: r.artifact_text(rc.VERDICT_TABLE) is not None)
    return run


def _difference(r: dict) -> str:
    return f"{r['difference_pp']:+.2f} [{r['ci_low_pp']:+.2f}, {r['ci_high_pp']:+.2f}]"


def comparison_lines(found: list) -> list:
    """Per family kind, a row per family, SNN, model and modality: the drops, the difference and which engine
    holds up better."""
    lines = []
    for kind in dict.fromkeys(r["kind"] for r in found):
        lines += [f"**{kind}** perturbations, which engine holds up better:", ""]
        rows = [[r["perturbation"], r["snn"], f"{r['model']}/{r['modality']}", r["levels"], pct(r.get("clean_dnn")),
                 pct(r.get("clean_snn")), f"{r['drop_dnn_pp']:.2f}", f"{r['drop_snn_pp']:.2f}", _difference(r),
                 r["holds_up_better"]] for r in found if r["kind"] == kind]
        lines += markdown_table(["family", "SNN", "model / modality", "levels", "DNN clean", "SNN clean",
                                 "DNN drop (pp)", "SNN drop (pp)", "difference [95% CI]", "holds up better"],
                                rows) + [""]
    return lines


def attack_lines(cells: list, refused: str) -> list:
    """Which attacks reached which engines: each attack family's source and the engines it ran on (with
    their accuracy at each budget), and the engines it was refused for."""
    attacks = {}
    for c in cells:
        name = c["perturbation"]
        if name in ("none", "gaussian") or rc.kind_of(name) != rc.ATTACK:
            continue
        attacks.setdefault(name, {}).setdefault(f"{c['engine']} {c['model']}/{c['modality']}", []).append(
            f"{100 * c['accuracy']:.1f}% at {c['level']:g}")
    if not attacks:
        return []
    rows = []
    for name, reached in attacks.items():
        source = rc.attack_source(name)
        left_out = [line.split(": ", 1)[0].split(" on ", 1)[1] for line in refused.splitlines()
                    if line.startswith(f"{name} on ")]
        rows.append([name, source, "; ".join(f"{k} ({', '.join(v)})" for k, v in reached.items()),
                     ", ".join(left_out) or "–"])
    return ["Which attacks reached which engines (accuracy under attack at each budget; an attack crafted on the "
            "DNN is white-box for ONNX Runtime and transferred to the SNNs; one crafted on the snntorch SNN is "
            "white-box for it and transferred to the DNN):", ""] + markdown_table(
        ["attack", "crafted on", "engines reached (accuracy at eps)", "refused for"], rows) + [""]


def robustness_lines(ctx) -> list:
    lines = ["## Robustness: faults, corruptions and attacks, DNN vs SNN", "", INTRO, ""]
    run = _run(ctx)
    if run is None:
        return lines + [f"_No robustness runs yet: run `{COMMAND}` (or `snnbench noise_sweep --perturbations all`)._",
                        ""]
    table = run.table(rc.VERDICT_TABLE)
    if table is None or table.empty or "verdict" not in table:
        return lines + unreadable(run, rc.VERDICT_TABLE)
    ctx.use(run)
    found = run.table(rc.COMPARISON_TABLE)
    if found is not None and not found.empty:
        lines += comparison_lines(found.to_dict("records"))
    verdicts = table.to_dict("records")
    claimed = [c for c in rc.claim_rows(verdicts) if c["verdict"] != rc.NOT_RUN]
    lines += ["The literature's robustness claims (faults: Schuman et al., IJCNN 2020; Spyrou et al., DATE 2021; "
              "El-Allami et al., DATE 2021; attacks: Sharmin et al., IJCNN 2019 and ECCV 2020; surrogates: Xu et "
              "al. 2022), each part the difference [95% CI] on one model and modality:", ""]
    lines += markdown_table(["claim", "levels", "measured", "verdict"],
                            [[c["claim"], c["levels"], c["measured"], f"**{c['verdict']}**"] for c in claimed]
                            or [["_none of the claims ran_", "–", "–", "–"]]) + [""]
    skipped = rc.not_run(verdicts)
    if skipped:
        lines += ["Claims not run:", ""] + markdown_table(["family", "SNNs", "levels", "why"],
                                                          [list(s.values()) for s in skipped]) + [""]
    cells = run.table(rc.CELLS)
    if cells is not None and not cells.empty:
        cells = cells.to_dict("records")
        lines += attack_lines(cells, run.artifact_text("perturbations_refused.txt") or "")
        for path in rc.figures(cells, ctx.figures, f"{run.tags.get('snnbench.benchmark', '')} "
                                                  f"{run.params.get('profile', '')}"):
            lines += [f"![accuracy vs level, {path.stem.rsplit('_', 1)[-1]} perturbations]"
                      f"({ctx.link_prefix}/{path.name})", ""]
    return lines + [scale_line([run]), ""]
