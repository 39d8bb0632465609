"""npcai.stats: evaluation statistics checked against R, and the evaluate/compare/table1 steps.

Pure metric functions, scikit-learn style ``metric(y_true, y_score)``, validated at the
boundary (a single-class set or a NaN probability raises :class:`npcai.errors.NpcaiError`):

* :mod:`~npcai.stats.auc` -- AUC with DeLong variance/CI, paired and unpaired DeLong tests,
  ROC points, Youden's threshold (pROC);
* :mod:`~npcai.stats.binary` -- confusion matrix, sensitivity/specificity/PPV/NPV/accuracy
  with Wilson CIs, F1;
* :mod:`~npcai.stats.concordance` -- Harrell's C with CI (survival::concordance, Hmisc);
* :mod:`~npcai.stats.bootstrap` -- patient-level bootstrap CI of any metric;
* :mod:`~npcai.stats.calibration` -- Brier score, calibration intercept and slope;
* :mod:`~npcai.stats.tnm` -- TNM stages as an ordinal baseline;
* :mod:`~npcai.stats.table1` -- the clinical-characteristics table.

Run-level steps: :func:`evaluate_run` (``npcai evaluate``), :func:`compare_runs` /
:func:`write_compare` (``npcai compare``), :func:`table1` (``npcai table1``), figures
:func:`plot_roc`, :func:`plot_confusion`.

Examples:
    >>> from npcai.stats import auc_ci
    >>> print(auc_ci([0, 0, 1, 1, 0, 1], [.1, .4, .35, .8, .2, .9]))
    0.889 (0.581-1.000)
"""
from npcai._lazy import lazy_exports

_EXPORTS = {
    'AucResult': 'npcai.stats.auc',
    'DelongTest': 'npcai.stats.auc',
    'RocCurve': 'npcai.stats.auc',
    'YoudenCut': 'npcai.stats.auc',
    'auc_ci': 'npcai.stats.auc',
    'delong_placements': 'npcai.stats.auc',
    'delong_test': 'npcai.stats.auc',
    'delong_test_unpaired': 'npcai.stats.auc',
    'roc_auc': 'npcai.stats.auc',
    'roc_curve': 'npcai.stats.auc',
    'youden_threshold': 'npcai.stats.auc',
    'BinaryMetrics': 'npcai.stats.binary',
    'ConfusionMatrix': 'npcai.stats.binary',
    'Proportion': 'npcai.stats.binary',
    'binary_metrics': 'npcai.stats.binary',
    'confusion_matrix': 'npcai.stats.binary',
    'metrics_from_confusion': 'npcai.stats.binary',
    'proportion': 'npcai.stats.binary',
    'wilson_ci': 'npcai.stats.binary',
    'BootstrapResult': 'npcai.stats.bootstrap',
    'bootstrap_ci': 'npcai.stats.bootstrap',
    'CalibrationResult': 'npcai.stats.calibration',
    'brier_score': 'npcai.stats.calibration',
    'calibration_intercept_slope': 'npcai.stats.calibration',
    'CompareResult': 'npcai.stats.compare',
    'compare_runs': 'npcai.stats.compare',
    'write_compare': 'npcai.stats.compare',
    'ConcordanceResult': 'npcai.stats.concordance',
    'c_index_binary': 'npcai.stats.concordance',
    'harrell_c': 'npcai.stats.concordance',
    'evaluate_predictions': 'npcai.stats.evaluate',
    'evaluate_run': 'npcai.stats.evaluate',
    'f1_score': 'npcai.stats.evaluate',
    'plot_confusion': 'npcai.stats.figures',
    'plot_roc': 'npcai.stats.figures',
    'table1': 'npcai.stats.table1',
    'TnmBaseline': 'npcai.stats.tnm',
    'tnm_baseline': 'npcai.stats.tnm',
    'tnm_scores': 'npcai.stats.tnm',
}

__all__ = [
    "AucResult", "DelongTest", "RocCurve", "YoudenCut", "auc_ci", "delong_placements", "delong_test",
    "delong_test_unpaired", "roc_auc", "roc_curve", "youden_threshold",
    "BinaryMetrics", "ConfusionMatrix", "Proportion", "binary_metrics", "confusion_matrix",
    "metrics_from_confusion", "proportion", "wilson_ci", "f1_score",
    "BootstrapResult", "bootstrap_ci",
    "CalibrationResult", "brier_score", "calibration_intercept_slope",
    "ConcordanceResult", "c_index_binary", "harrell_c",
    "TnmBaseline", "tnm_baseline", "tnm_scores", "table1",
    "evaluate_run", "evaluate_predictions", "CompareResult", "compare_runs", "write_compare",
    "plot_roc", "plot_confusion",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
