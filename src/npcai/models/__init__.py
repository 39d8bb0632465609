"""Classifiers: timm backbone factory, image- and patient-level models, training, run folders, ensembles.

Modules (one concept each): ``factory`` (backbone registry, ``create_classifier``),
``classifier`` (``ImageClassifier``, ``PatientMILClassifier``), ``data`` (datasets over the
ROI cache, augmentation), ``lightning_module``, ``tasks`` (what is learnt), ``train`` (``train()``), ``ensemble`` (soft voting), ``curves`` (training-curve PNG).
Exports are lazy so that ``npcai --help`` does not import torch. The training function is
``npcai.models.train.train`` (not re-exported: it shares its name with the module).

Examples:
    >>> from npcai.models import create_classifier, list_backbones
    >>> net = create_classifier("resnet18", in_chans=1)
"""
from npcai._lazy import lazy_exports

_EXPORTS = {
    "AttentionPool": "npcai.models.classifier",
    "ImageClassifier": "npcai.models.classifier",
    "PatientMILClassifier": "npcai.models.classifier",
    "SEED_BACKBONES": "npcai.models.factory",
    "create_backbone": "npcai.models.factory",
    "create_classifier": "npcai.models.factory",
    "create_patient_classifier": "npcai.models.factory",
    "list_backbones": "npcai.models.factory",
    "min_input_size": "npcai.models.factory",
    "LoadedRun": "npcai.runs.load",
    "load_run": "npcai.runs.load",
    "TrainConfig": "npcai.models.train",
    "TrainResult": "npcai.models.train",
    "ensemble_runs": "npcai.models.ensemble",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
