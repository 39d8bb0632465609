"""Classifiers: timm backbone factory, image- and patient-level models, training, run folders, ensembles.

Examples:
    >>> from npcai.models import create_classifier, list_backbones
    >>> net = create_classifier("resnet18", in_chans=1)
"""
from npcai.models.classifier import AttentionPool, ImageClassifier, PatientMILClassifier
from npcai.models.factory import (SEED_BACKBONES, create_backbone, create_classifier,
                                  create_patient_classifier, list_backbones, min_input_size)

from npcai.models.run import LoadedRun, load_run
from npcai.models.train import TrainConfig, TrainResult, train
from npcai.models.ensemble import ensemble_runs

__all__ = ["LoadedRun", "load_run", "TrainConfig", "TrainResult", "train", "ensemble_runs", "AttentionPool", "ImageClassifier", "PatientMILClassifier", "SEED_BACKBONES",
           "create_backbone", "create_classifier", "create_patient_classifier", "list_backbones",
           "min_input_size"]
