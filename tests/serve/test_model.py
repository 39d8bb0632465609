"""What a MODEL_DIR offers: runs, studies (best validation AUC), refusals; and the CLI."""
from __future__ import annotations

import json
import shutil

import pytest

from npcai.errors import NpcaiError


def _copy_with_val_auc(run, dst, val_auc: float):
    shutil.copytree(run, dst)
    summary = json.loads((dst / "summary.json").read_text())
    summary["val_auc"] = val_auc
    (dst / "summary.json").write_text(json.dumps(summary))


def test_study_serves_its_best_validation_run(serve_run, tmp_path):
    from npcai.serve.model import open_model

    study = tmp_path / "study"
    (study / "runs").mkdir(parents=True)
    (study / "study.yaml").write_text("name: tiny\n")
    _copy_with_val_auc(serve_run, study / "runs" / "a__low", 0.55)
    _copy_with_val_auc(serve_run, study / "runs" / "b__high", 0.8)
    _copy_with_val_auc(serve_run, study / "runs" / "c__nan", float("nan"))
    served = open_model(study)
    assert served.run_dir.name == "b__high"
    assert served.card.kind == "study" and served.card.name == "study"
    assert "highest validation AUC (0.800)" in served.card.selection and "test patients chose nothing" in \
        served.card.selection


def test_not_a_model_folder(tmp_path):
    from npcai.serve.model import open_model

    with pytest.raises(NpcaiError, match="neither a finished run"):
        open_model(tmp_path)
    with pytest.raises(NpcaiError, match="folder not found"):
        open_model(tmp_path / "missing")
    (tmp_path / "study.yaml").write_text("name: x\n")
    (tmp_path / "runs").mkdir()
    with pytest.raises(NpcaiError, match="no finished training run"):
        open_model(tmp_path)


def test_cli_help_and_refusals(cli, serve_run, tmp_path):
    r = cli("serve", "--help")
    assert r.code == 0
    for needle in ("run folder", "study folder", "--token", "--max-upload-mb", "not a medical device"):
        assert needle in " ".join(r.stdout.split())
    r = cli("serve", serve_run, "--host", "0.0.0.0")
    assert r.code == 2 and "add --token" in r.stderr and r.stderr.count("\n") == 1
    r = cli("serve", tmp_path / "nothing")
    assert r.code == 2 and r.stderr.startswith("error: ") and "folder not found" in r.stderr


def test_access_log_never_shows_the_token():
    import logging

    from npcai.serve.cli import _RedactToken

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/?token=s3cret&x=1", "1.1", 303), None)
    assert _RedactToken().filter(record)
    assert "s3cret" not in record.getMessage() and "token=[redacted]&x=1" in record.getMessage()


def test_cross_validated_run_or_study_is_refused_in_one_line_naming_a_fold_run(cli, tmp_path):
    from npcai.runs import RUN_FORMAT, write_run
    from npcai.serve.model import open_model

    import pandas as pd

    cv = tmp_path / "cv"
    write_run(cv, config={"format": RUN_FORMAT, "kind": "cv", "fold_runs": ["folds/fold1", "folds/fold2"]},
              patients=pd.DataFrame({"patient_id": ["P1"], "split": ["oof"], "fold": [1], "label": [1],
                                     "prob": [0.7], "threshold": [0.5]}))
    with pytest.raises(NpcaiError, match="cross-validated run") as exc:
        open_model(cv)
    assert str(cv / "folds" / "fold1") in str(exc.value) and "without --folds" in str(exc.value)
    r = cli("serve", cv)
    assert r.code == 2 and r.stderr.count("\n") == 1 and "serve one of its fold runs" in r.stderr

    study = tmp_path / "study"
    (study / "runs").mkdir(parents=True)
    (study / "study.yaml").write_text("name: tiny\n")
    shutil.copytree(cv, study / "runs" / "all__expand20__resnet18__image")
    with pytest.raises(NpcaiError, match="its runs are cross-validated") as exc:
        open_model(study)
    assert "folds/fold1" in str(exc.value)
