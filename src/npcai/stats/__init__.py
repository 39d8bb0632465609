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
from npcai.stats.auc import (AucResult, DelongTest, RocCurve, YoudenCut, auc_ci, delong_placements,
                             delong_test, delong_test_unpaired, roc_auc, roc_curve, youden_threshold)
from npcai.stats.binary import (BinaryMetrics, ConfusionMatrix, Proportion, binary_metrics,
                                confusion_matrix, metrics_from_confusion, proportion, wilson_ci)
from npcai.stats.bootstrap import BootstrapResult, bootstrap_ci
from npcai.stats.calibration import CalibrationResult, brier_score, calibration_intercept_slope
from npcai.stats.compare import CompareResult, compare_runs, write_compare
from npcai.stats.concordance import ConcordanceResult, c_index_binary, harrell_c
from npcai.stats.evaluate import evaluate_predictions, evaluate_run, f1_score
from npcai.stats.figures import plot_confusion, plot_roc
from npcai.stats.table1 import table1
from npcai.stats.tnm import TnmBaseline, tnm_baseline, tnm_scores

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
