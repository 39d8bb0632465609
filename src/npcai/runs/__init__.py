"""Run folders: the only code that reads or writes one (config, split, predictions,
checkpoints, summary), typed; prediction on any cohort; provenance checks.

Modules: ``folder`` (layout, :class:`RunConfig`, :class:`RoiSpec`, :class:`Predictions`,
:func:`read_run`, writers, :func:`package_versions`, provenance checks), ``checkpoint``
(``weights_only`` loading, atomic saving), ``load`` (:func:`load_run` with the network),
``predict`` (:func:`predict_patients`, :func:`write_predictions`).

Examples:
    >>> from npcai.runs import read_run, predict_patients      # doctest: +SKIP
    >>> preds = predict_patients("runs/r1", "cohort2", patients=["P0003"])   # doctest: +SKIP
"""
from npcai._lazy import lazy_exports

_FOLDER = "npcai.runs.folder"
_EXPORTS = {
    **{name: _FOLDER for name in (
        "RUN_FORMAT", "KINDS", "CONFIG", "SPLIT", "PATIENTS", "SLICES", "SUMMARY", "HISTORY", "LANDMARKS",
        "run_landmarks",
        "ROI_SPEC_KEYS", "RoiSpec", "RunConfig", "Predictions", "RunFolder", "RunSummary",
        "package_versions", "partial_dir", "cohort_id", "read_config", "read_split", "read_predictions",
        "read_summary", "read_history", "read_run", "write_run", "write_yaml", "write_json", "write_csv",
        "check_cohort", "check_roi", "is_finished")},
    "save_checkpoint": "npcai.runs.checkpoint",
    "load_checkpoint": "npcai.runs.checkpoint",
    "load_model_weights": "npcai.runs.checkpoint",
    "LoadedRun": "npcai.runs.load",
    "load_run": "npcai.runs.load",
    "load_network": "npcai.runs.load",
    "predict_patients": "npcai.runs.predict",
    "write_predictions": "npcai.runs.predict",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
