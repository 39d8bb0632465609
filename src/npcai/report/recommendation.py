"""The residual study's "Treatment recommendation (study 002, Table 3)" section and its sentences.

:func:`recommendation_section` adds the section to a study report when the study has a
CCRT-trained and an IC+CCRT-trained residual-tumour model (``npcai study run residual``): the
models and thresholds, Table 3, both judgements with their correct rates, the seed's unpaired
test and McNemar's paired test, and on the phantom the agreement with the truly best treatment
and the policy value (mean true outcome under the recommendation, the physicians' choices and
the oracle). :func:`summary_lines` gives the sentences (also printed by ``npcai recommend
residual``); every comparison is worded by :mod:`npcai.report.wording`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from npcai.errors import NpcaiError
from npcai.report.wording import Comparison, comparison_sentence, format_p

__all__ = ["SECTION_TITLE", "summary_lines", "judgement_table", "significance_table", "truth_table",
           "policy_figure", "recommendation_section", "applies_to"]

log = logging.getLogger(__name__)

SECTION_TITLE = "Treatment recommendation (study 002, Table 3)"


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _rate_ci(rate, low, high) -> str:
    if rate is None:
        return "undefined (nothing decidable)"
    return f"{100 * rate:.2f}% (95% CI {100 * low:.1f}–{100 * high:.1f}%)"


def _sentence(c: Comparison) -> str:
    s = comparison_sentence(c)
    return s[0].upper() + s[1:]


def _agree(a) -> str:
    if a.rate is None:
        return "no patient"
    return f"{a.agree}/{a.n} = {100 * a.rate:.1f}% (95% CI {100 * a.ci_low:.1f}–{100 * a.ci_high:.1f}%)"


def summary_lines(result) -> list[str]:
    """Sentences that say what the judgement, the tests and the truth support."""
    c = result.comparison
    lines = [f"{len(result.patients)} patients, {result.patient_set}. The model's recommendation was right in "
             f"{c.model.right}, wrong in {c.model.wrong} and undecidable in {c.model.undecidable} "
             f"(correct rate {_rate_ci(c.model.rate, c.model.ci_low, c.model.ci_high)}); the physicians' decision "
             f"was right in {c.physician.right}, wrong in {c.physician.wrong} and undecidable in "
             f"{c.physician.undecidable} (correct rate "
             f"{_rate_ci(c.physician.rate, c.physician.ci_low, c.physician.ci_high)})."]
    p = c.paired
    if p.n and p.model_rate is not None:
        lines.append(_sentence(Comparison(
            "the model's recommendation", "the physicians' decisions", p.model_rate, p.physician_rate,
            p_value=p.p_exact, test=f"McNemar's exact test on the patients decidable for both "
                                    f"({p.model_only} model-only vs {p.physician_only} physician-only right)",
            metric="correct rate", n=p.n)))
    else:
        lines.append("No patient was decidable for both model and physician, so the paired comparison was not made.")
    if c.model.rate is not None and c.physician.rate is not None:
        lines.append(f"Seed-style unpaired tests of the correct rates (the seed's P): Pearson's chi-squared without "
                     f"continuity correction {format_p(c.p_pearson)}, Fisher's exact test {format_p(c.p_fisher)}; they "
                     "treat the model's and the physicians' judgements as independent samples although they are "
                     "the same patients, so McNemar's test above is the one to read.")
    if result.truth is not None:
        t = result.truth
        lines.append("Against the phantom's truth, the regimen with the lower true residual probability was "
                     f"recommended for {_agree(t.agreement_residual)} of the patients with a decided recommendation "
                     f"({t.agreement_residual.n_undecided} IBT not scored) and chosen by the physicians for "
                     f"{_agree(t.physician_agreement_residual)}.")
        pv = t.policy_residual
        lines.append(_sentence(Comparison(
            "the recommendation (IBT patients given the physician's choice)", "the physicians' choices",
            pv.recommended.mean, pv.physician.mean, diff_low=pv.gain_over_physician.low,
            diff_high=pv.gain_over_physician.high, test="paired patient bootstrap, true counterfactual outcomes",
            metric="mean true probability of non-residual tumour", n=pv.n))
            + f" Oracle {pv.oracle.mean:.3f}; regret of the recommendation {pv.regret}.")
    return lines


def judgement_table(result) -> pd.DataFrame:
    """Right / wrong / undecidable and the correct rate, model vs physicians."""
    c = result.comparison
    rows = []
    for who, j in (("Model recommendation", c.model), ("Physicians' decision", c.physician)):
        rows.append({"Decision by": who, "Right": j.right, "Wrong": j.wrong, "Undecidable": j.undecidable,
                     "Correct rate (95% CI)": _rate_ci(j.rate, j.ci_low, j.ci_high)})
    return pd.DataFrame(rows)


def significance_table(result) -> pd.DataFrame:
    """The seed's unpaired tests and the paired McNemar tests."""
    c, p = result.comparison, result.comparison.paired

    def pv(x):
        return "–" if x is None else (f"{x:.4f}" if x >= 0.0001 else "<0.0001")

    decidable = c.model.right + c.model.wrong + c.physician.right + c.physician.wrong
    return pd.DataFrame([
        {"Test": "Pearson's chi-squared, no continuity correction (the seed's P; unpaired)",
         "Data": f"2 x 2 right/wrong counts ({decidable} judgements)", "p": pv(c.p_pearson)},
        {"Test": "Fisher's exact test (unpaired)", "Data": "same 2 x 2 table", "p": pv(c.p_fisher)},
        {"Test": "McNemar's exact test (paired; reported)",
         "Data": f"{p.n} patients decidable for both: {p.both_right} both right, {p.model_only} model only, "
                 f"{p.physician_only} physician only, {p.both_wrong} both wrong", "p": pv(p.p_exact)},
        {"Test": "McNemar's chi-squared with continuity correction (paired)", "Data": "same patients",
         "p": pv(p.p_chi2)},
    ])


def truth_table(result) -> pd.DataFrame | None:
    """On the phantom: agreement with the truly best treatment and the policy values."""
    t = result.truth
    if t is None:
        return None

    def est(e) -> str:
        return f"{e.mean:.3f} ({e.low:.3f} to {e.high:.3f})"

    rows = [
        {"Measure": "Agreement with best_treatment_residual (lower true residual probability), Wilson 95% CI",
         "Recommendation": _agree(t.agreement_residual) + f"; {t.agreement_residual.n_undecided} IBT not scored",
         "Physicians": _agree(t.physician_agreement_residual), "Oracle": "100%"},
        {"Measure": "Agreement with best_treatment (higher true 5-year DFS), Wilson 95% CI",
         "Recommendation": _agree(t.agreement_dfs), "Physicians": _agree(t.physician_agreement_dfs), "Oracle": "100%"},
    ]
    for name, pv in (("true probability of non-residual tumour", t.policy_residual),
                     ("true 5-year DFS", t.policy_dfs)):
        rows.append({"Measure": f"Mean {name} (bootstrap 95% CI; IBT: physician's choice)",
                     "Recommendation": est(pv.recommended), "Physicians": est(pv.physician),
                     "Oracle": est(pv.oracle)})
        rows.append({"Measure": f"Regret = oracle − policy, {name}", "Recommendation": est(pv.regret),
                     "Physicians": est(pv.physician_regret), "Oracle": "0"})
    return pd.DataFrame(rows)


def policy_figure(truth):
    """Mean true outcome under the physicians' choices, the recommendation and the oracle, with
    bootstrap 95% CIs: one panel per outcome (probability of non-residual tumour, 5-year DFS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = (("Non-residual tumour", "Mean true probability of\nnon-residual tumour (%)", truth.policy_residual),
              ("5-year DFS", "Mean true 5-year DFS (%)", truth.policy_dfs))
    for ax, (title, ylabel, pv) in zip(axes, panels):
        ests = [pv.physician, pv.recommended, pv.oracle]
        names = ["Physicians'\nchoices", "Recommendation\n(IBT: physician)", "Oracle\n(best per patient)"]
        x = range(len(ests))
        means = [100 * e.mean for e in ests]
        err = [[100 * (e.mean - e.low) for e in ests], [100 * (e.high - e.mean) for e in ests]]
        ax.errorbar(x, means, yerr=err, fmt="o", capsize=5, color="black")
        for i, m in zip(x, means):
            ax.annotate(f"{m:.1f}", (i, m), textcoords="offset points", xytext=(8, -3), fontsize=8)
        ax.set_xticks(list(x), names, fontsize=8)
        ax.set_xlim(-0.5, len(ests) - 0.5)
        ax.set_ylabel(ylabel)
        g = pv.gain_over_physician
        ax.set_title(f"{title} (n = {pv.n})\nrecommendation − physicians: {100 * g.mean:+.1f} "
                     f"({100 * g.low:+.1f} to {100 * g.high:+.1f}) points", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Policy value on the phantom's test patients (paired bootstrap 95% CI)", fontsize=10)
    fig.tight_layout()
    return fig


def _models_table(result) -> pd.DataFrame:
    return pd.DataFrame([{"Treatment model": t, "Run": m.run.name, "Backbone": m.backbone, "Unit": m.unit,
                          "Validation AUC": "–" if m.val_auc is None else f"{m.val_auc:.3f}",
                          "Chosen by": m.selection, "Threshold (residual if prob >)": f"{m.threshold:.3f}",
                          "Threshold from": m.threshold_source} for t, m in result.models.items()])


def applies_to(resolved) -> bool:
    """Whether a study has the study-002 recommendation: residual-tumour models per treatment."""
    s = resolved.study
    return s.endpoint == "residual-tumour" and sum("treatment" in str(x.where or "") for x in s.subsets) >= 2


def recommendation_section(rep, out: Path, cohort_dir: Path, resolved, steps: pd.DataFrame) -> None:
    """Add the section to ``rep`` when :func:`applies_to` the study (else nothing)."""
    if not applies_to(resolved):
        return
    from npcai.decision.residual_recommend import recommend_residual

    sec = rep.section("recommendation", SECTION_TITLE)
    runs = [Path(r) for r in steps.loc[steps["source"] == "run", "run"]] if len(steps) else []
    try:
        result = recommend_residual(runs, cohort_dir)
    except NpcaiError as exc:
        log.warning("study-002 recommendation not made: %s", exc)
        sec.note(f"The recommendation could not be made: {exc}")
        return
    sec.text("Seed 002's rule: every patient is predicted by both the CCRT-trained and the IC+CCRT-trained model "
             "(each patient also by the model of the regimen not received); CCRT is recommended when the CCRT model "
             "predicts non-residual tumour, IC+CCRT when only the IC+CCRT model does, and individual-based "
             "treatment (IBT) when both predict residual tumour. Each model's threshold was fixed on its own "
             "validation patients. Model and physician are judged by the seed's principle (avoid over-treatment "
             "while reaching non-residual tumour; the model can be right only when its prediction for the regimen "
             "received matched the observed effect); the correct rate leaves out undecidable patients.")
    sec.table("Models of the rule (chosen on validation patients)", _models_table(result),
              csv_name="recommendation_models")
    sec.table(f"Table 3 layout: model recommendation vs the physicians' decision ({result.patient_set}); "
              "'new': a combination the seed's test cohort did not have", result.table3,
              csv_name="recommendation_table3")
    sec.table("Judgement of the model's recommendation and of the physicians' decisions", judgement_table(result),
              csv_name="recommendation_judgement")
    sec.table("Tests of the correct rates (the seed's P = 0.002 is reproduced by Pearson's chi-squared without "
              "continuity correction, p = 0.0019 on its counts; McNemar's test is the paired test)",
              significance_table(result), csv_name="recommendation_tests")
    sec.bullets(summary_lines(result))
    truth = truth_table(result)
    if truth is not None:
        sec.text("This cohort is the synthetic phantom: every patient's true residual probability and 5-year DFS "
                 "under both regimens are known, so the recommendation can be scored directly. best_treatment_residual "
                 "is the regimen with the lower true residual probability; the rule prefers CCRT whenever CCRT is "
                 "predicted to reach non-residual tumour (less treatment), so it can disagree with it by design when "
                 "IC+CCRT is only slightly better.")
        sec.table("Recommendation scored against the phantom's truth (test patients)", truth,
                  csv_name="recommendation_truth")
        from npcai.report.figures import save_png

        png = save_png(policy_figure(result.truth), Path(out) / "report" / "figures" / "recommendation_policy.png")
        sec.figure("Mean true outcome if every test patient had the physicians' choice, the recommended regimen "
                   "(IBT patients: the physician's choice) or their truly best regimen, with paired patient-bootstrap "
                   "95% CIs.", png)
    for n in result.notes:
        sec.note(n)
    per_patient = result.patients.reset_index()
    from npcai.report.study import atomic_csv

    atomic_csv(Path(out) / "report" / "tables" / "recommendation_patients.csv", per_patient)
