"""The HTML report: self-contained, tables and figures present, rendered by Chromium."""
from __future__ import annotations

import numpy as np
import pandas as pd

from npcai.report import figures as F
from npcai.report.html import Report, dataframe_html, write_report
from npcai.report.tables import RESULT_COLUMNS, fmt_ci, main_tables


def _results() -> pd.DataFrame:
    rows = []
    for roi, exp, kind in (("original", None, "whole-slice"), ("segmented", 0, "tumour-only"),
                           ("expand10", 10, "expanded")):
        for bb, auc in (("resnet18", 0.6), ("efficientnet_b0", 0.7)):
            a = auc + (0.1 if roi == "expand10" else 0)
            rows.append(dict(model=f"{roi} · {bb}", source="run", subset="all", subset_label="all",
                             roi=roi, roi_label=roi.title(), kind=kind, expansion=exp, backbone=bb,
                             unit="image", n_test=20, n_pos=10, auc=a, auc_low=a - 0.1, auc_high=a + 0.1,
                             sensitivity=0.7, specificity=0.6, precision=0.64, f1=0.67, accuracy=0.65,
                             tp=7, fp=4, tn=6, fn=3))
    return pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)


def test_main_table_layout_000_has_aauc_and_sd():
    t = main_tables(_results(), "expansion")["main"]
    assert list(t.columns) == ["Dataset", "Model", "Sensitivity", "Specificity", "F1 score", "Precision",
                               "AUC", "95% CI", "aAUC (SD)"]
    first = t[t["Dataset"] == "Expand10"].iloc[0]
    assert first["aAUC (SD)"] == "0.750 (0.071)"          # mean of 0.7 and 0.8, SD sqrt(0.005)
    assert "nan" not in t.to_csv()


def test_missing_values_never_print_nan():
    assert fmt_ci(float("nan"), 0.1, 0.2) == "–"
    html = dataframe_html(pd.DataFrame({"a": [np.nan, 1]}))
    assert "nan" not in html.lower()


def test_report_is_self_contained_and_renders(tmp_path, open_in_chromium):
    res = _results()
    fig = F.expansion_figure(res.dropna(subset=["expansion"]), baseline=res[res["kind"] == "whole-slice"],
                             oracle_auc=0.9)
    png = F.save_png(fig, tmp_path / "report" / "figures" / "auc_vs_expansion.png")
    rep = Report(title="Test study", subtitle="preset fast", facts=[("Preset", "fast")])
    sec = rep.section("main", "Main results")
    sec.table("Table 3", main_tables(res, "expansion")["main"], csv_name="main_table")
    sec.figure("AUC against expansion", png)
    rep.section("methods", "Methods").text("Methods <script>alert(1)</script> & more")
    path = write_report(rep, tmp_path / "report")
    html = path.read_text()
    assert "data:image/png;base64," in html and "<script>alert" not in html
    assert (tmp_path / "report" / "tables" / "main_table.csv").is_file()
    facts = open_in_chromium(path, tmp_path / "shot.png")
    assert facts["sections"] == ["main", "methods"]
    assert facts["tables"] and facts["tables"][0] == 1 + len(res)
    assert facts["images"] and all(i["w"] > 100 for i in facts["images"])
    assert facts["external"] == []
    assert "<script>" in facts["text"]                  # escaped text, shown literally
    assert (tmp_path / "shot.png").stat().st_size > 10_000
