"""npcai.survival: survival statistics equal to R's survival, rms, MASS and MatchIt (checked to 1e-6).

* :mod:`~npcai.survival.kaplan_meier` -- :class:`KaplanMeier` (Greenwood SE, log/log-log CIs, median);
* :mod:`~npcai.survival.logrank` -- :func:`logrank_test` (k groups, stratified);
* :mod:`~npcai.survival.cox` -- :class:`CoxPH` (Efron/Breslow, tests, interactions, predicted
  survival), :func:`cox_univariate`;
* :mod:`~npcai.survival.zph` -- :func:`cox_zph` (proportional hazards);
* :mod:`~npcai.survival.stepwise` -- :func:`step_aic` (both directions, marginality);
* :mod:`~npcai.survival.nomogram` -- :class:`Nomogram` (rms style, points calculator, JSON);
* :mod:`~npcai.survival.calibration` -- :func:`calibrate_survival` (rms::calibrate KM, GOF, ICI);
* :mod:`~npcai.survival.groups` -- :func:`compare_groups`, :class:`RiskGroups`,
  :func:`subgroup_hazard_ratios`;
* :mod:`~npcai.survival.matching` -- :func:`match_nearest` (MatchIt nearest, balance table);
* :mod:`~npcai.survival.cindex` -- :func:`compare_cindex`;
* :mod:`~npcai.survival.figures` -- KM, calibration, nomogram and forest figures;
* :mod:`~npcai.survival.commands` -- the ``npcai survival ...`` analyses that write a folder.

Examples:
    >>> from npcai.survival import KaplanMeier
    >>> KaplanMeier().fit([2, 3, 5, 8], [1, 0, 1, 1]).median_.median
    5.0
"""
from npcai._lazy import lazy_exports

_EXPORTS = {
    "KaplanMeier": "npcai.survival.kaplan_meier",
    "MedianSurvival": "npcai.survival.kaplan_meier",
    "logrank_test": "npcai.survival.logrank",
    "LogRankResult": "npcai.survival.logrank",
    "CoxPH": "npcai.survival.cox",
    "TestResult": "npcai.survival.cox",
    "cox_univariate": "npcai.survival.cox",
    "cox_zph": "npcai.survival.zph",
    "ZphResult": "npcai.survival.zph",
    "step_aic": "npcai.survival.stepwise",
    "StepwiseResult": "npcai.survival.stepwise",
    "Nomogram": "npcai.survival.nomogram",
    "PatientPoints": "npcai.survival.nomogram",
    "calibrate_survival": "npcai.survival.calibration",
    "CalibrationResult": "npcai.survival.calibration",
    "compare_groups": "npcai.survival.groups",
    "GroupComparison": "npcai.survival.groups",
    "RiskGroups": "npcai.survival.groups",
    "subgroup_hazard_ratios": "npcai.survival.groups",
    "match_nearest": "npcai.survival.matching",
    "MatchResult": "npcai.survival.matching",
    "compare_cindex": "npcai.survival.cindex",
    "CindexComparison": "npcai.survival.cindex",
    "load_table": "npcai.survival.io",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
