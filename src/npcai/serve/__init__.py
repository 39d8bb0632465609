"""npcai.serve: the clinician's web tool (``npcai serve MODEL_DIR``).

One patient's pre-treatment MRI and tumour contour in, the served model's risk, its place
among the training patients, Grad-CAM with localisation shares and a model card out, with
a one-page report. Research use only, not a medical device.

Modules: :mod:`~npcai.serve.model` (what a MODEL_DIR offers), :mod:`~npcai.serve.upload`
(safe zip handling, de-identification at the door), :mod:`~npcai.serve.pipeline` (the one
prediction function), :mod:`~npcai.serve.render` (figures), :mod:`~npcai.serve.service`
(one request, worker pool), :mod:`~npcai.serve.app` (FastAPI).
"""
from npcai.serve.app import create_app
from npcai.serve.model import ServedModel, open_model
from npcai.serve.pipeline import PatientResult, score_patient
from npcai.serve.upload import UploadError, UploadLimits

__all__ = ["create_app", "open_model", "ServedModel", "score_patient", "PatientResult", "UploadLimits",
           "UploadError"]
