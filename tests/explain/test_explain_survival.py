"""Grad-CAM of a survival run's two heads (study 004 Fig. D7) on a tiny run."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from npcai.explain.survival import HEAD_GROUPS, SurvivalHeadCam, survival_groups


def test_groups_are_the_ends_of_each_score():
    pats = pd.DataFrame({"patient_id": [f"P{i}" for i in range(8)], "split": ["test"] * 7 + ["train"],
                         "prognostic_score": [5, 1, 3, 0, 4, 2, 6, 99], "predictive_score": [0, -3, 2, 1, -1, 3, -2, -9]})
    g = survival_groups(pats, top=2)
    assert g["prognostic:high-risk"] == ["P6", "P0"] and g["prognostic:low-risk"] == ["P3", "P1"]
    assert g["predictive:ICT-preferred"] == ["P1", "P6"] and g["predictive:CCRT-preferred"] == ["P5", "P2"]
    assert len(survival_groups(pats, top=10)["prognostic:high-risk"]) == 3     # at most half of the split


def test_head_cam_is_the_gradient_of_the_patient_score():
    """Each slice's 'logit' is the patient's (sign-adjusted) head score of the whole bag."""
    from npcai.survival.deep.network import create_survival_network

    net = create_survival_network("resnet10t", sequences=["T1", "T2"]).eval()
    x = torch.randn(3, 2, 32, 32)
    whole = net(x.unsqueeze(0))[0]
    for head, index in (("prognostic", 0), ("predictive", 1)):
        out = SurvivalHeadCam(net, head, sign=-1.0)(x)
        assert out.shape == (3,)
        torch.testing.assert_close(out, -whole[index].expand(3))


def test_explain_survival_run_draws_both_heads(cli, survival_run, tmp_path):
    surv_run = survival_run
    out = tmp_path / "cam"
    r = cli("explain", surv_run, "--out", out, "--top", "1", "--max-slices", "2")
    assert r.code == 0, r.stderr
    assert "prognostic:high-risk" in r.stdout and "tumour" in r.stdout
    meta = json.loads((out / "explain.json").read_text())
    assert set(meta["groups"]) == {f"{h}:{g}" for h, gs in HEAD_GROUPS.items() for g, _ in gs}
    for key in meta["groups"]:
        assert (out / f"montage_{key.replace(':', '_')}.png").is_file()
    loc = pd.read_csv(out / "localisation.csv")
    assert set(loc["head"]) == {"prognostic", "predictive"}
    assert (loc["cam_energy"] >= 0).all()
    from npcai.explain.localisation import region_names

    shares = loc[[f"share_{r}" for r in region_names("px")]]      # the px regions partition the energy
    with_energy = loc["cam_energy"] > 0
    assert with_energy.any()
    np.testing.assert_allclose(shares[with_energy].sum(axis=1), 1, atol=1e-6)
    summary = pd.read_csv(out / "localisation_summary.csv")
    assert set(summary["run"]) == set(meta["groups"])
    r = cli("explain", surv_run, "--out", tmp_path / "x", "--split", "nowhere")
    assert r.code == 2 and "split 'nowhere'" in r.stderr and r.stderr.strip().count("\n") == 0
