"""`npcai explain` end to end on tiny trained runs of the shared small phantom cohort."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(small_cohort, tmp_path_factory):
    """Two 1-epoch resnet18 runs made with the CLI on a copy of the cohort: ROI expand:10px
    (48 px) and original (48 px cache, network at 64 px: exercises the resize path)."""
    from npcai.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("explain")
    cohort = root / "cohort"
    shutil.copytree(small_cohort, cohort)
    out = {}
    try:
        for name, variant, size in (("exp10", "expand:10px", "48"), ("orig", "original", "64")):
            assert main(["roi", "build", str(cohort), "--variant", variant, "--name", name, "--size", "48"]) == 0
            run = root / f"run_{name}"
            assert main(["train", str(cohort), "--roi", name, "--out", str(run), "--endpoint", "pfs-median",
                         "--backbone", "resnet18", "--no-pretrained", "--epochs", "1", "--patience", "1",
                         "--batch-size", "16", "--no-augment", "--val-fraction", "0.3", "--size", size]) == 0
            out[name] = run
    finally:
        torch.set_num_threads(threads)
    return out


def test_explain_writes_overlays_montages_and_tables(cli, runs, tmp_path):
    out = tmp_path / "explain"
    r = cli("explain", runs["exp10"], "--out", out, "--top", "2", "--max-slices", "2",
            "--runs", runs["orig"], "--target", "predicted")
    assert r.code == 0, r
    assert "phantom signal band" in r.stdout

    loc = pd.read_csv(out / "localisation.csv", dtype={"patient_id": str})
    assert set(loc["run"]) == {runs["exp10"].name, runs["orig"].name}
    patients = loc["patient_id"].unique().tolist()
    assert len(patients) == 2
    assert loc.groupby(["run", "patient_id"]).size().max() <= 2
    # the top patients are the two highest predicted risks of the test split
    preds = pd.read_csv(runs["exp10"] / "predictions_patients.csv", dtype={"patient_id": str})
    top = preds[preds.split == "test"].sort_values("prob", ascending=False)["patient_id"].head(2)
    assert set(patients) == set(top)

    main = loc[loc["run"] == runs["exp10"].name]
    for _, row in main.iterrows():
        png = out / "overlays" / f"{row.patient_id}_z{row.slice_index}.png"
        with Image.open(png) as im:
            assert im.size[0] > 300 and im.size[1] > 300
    for p in patients:
        assert (out / f"montage_{p}.png").is_file() and (out / f"runs_{p}.png").is_file()

    px = [c for c in loc if c.startswith("share_") and c.endswith("px")] + ["share_tumour", "share_nodes"]
    mm = [c for c in loc if c.startswith("share_") and c.endswith("mm")] + ["share_tumour", "share_nodes", "share_far"]
    assert len(px) == 7 and len(mm) == 7
    lit = loc[loc["cam_energy"] > 0]
    assert len(lit) > 0
    np.testing.assert_allclose(lit[px].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(lit[mm].sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(loc[[c.replace("share_", "uniform_") for c in px]].sum(axis=1), 1.0, atol=1e-6)
    assert lit["share_signal_band"].between(0, 1).all()       # every ROI slice has tumour (slices=tumour)
    assert loc["uniform_signal_band"].between(0, 1).all()

    summary = pd.read_csv(out / "localisation_summary.csv")
    assert set(summary["scale"]) == {"px", "mm", "signal"}
    assert (summary.groupby(["run", "scale"]).size().loc[(runs["orig"].name, "px")]) == 7
    per_run = pd.read_csv(runs["orig"] / "explain" / "localisation_summary.csv")
    assert set(per_run["run"]) == {runs["orig"].name}
    with Image.open(out / "localisation.png") as im:
        assert im.size[0] > 600


def test_explain_bad_input_is_one_line(cli, runs, tmp_path):
    r = cli("explain", runs["exp10"], "--out", tmp_path / "a", "--patients", "P9999")
    assert r.code == 2 and "P9999" in r.stderr and "Traceback" not in r.stderr
    r = cli("explain", runs["exp10"], "--out", tmp_path / "b", "--method", "gradcam3")
    assert r.code == 2 and "gradcam3" in r.stderr
    r = cli("explain", tmp_path / "nope", "--out", tmp_path / "c")
    assert r.code == 2 and "nope" in r.stderr
    assert not (tmp_path / "a").exists()
