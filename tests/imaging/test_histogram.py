"""Nyúl–Udupa histogram standardisation: landmarks learnt on training scans, any scan mapped onto them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from npcai.cohort.model import Cohort
from npcai.errors import NpcaiError
from npcai.imaging.histogram import (HistogramStandardiser, fit_cohort_standardisers, load_standardisers,
                                     save_standardisers)
from npcai.imaging.normalise import body_mask


@pytest.fixture(scope="module")
def centres(small_cohort):
    """Training patients' T1c, and one held-out patient of each centre."""
    cohort = Cohort.load(small_cohort)
    clin = cohort.clinical()
    by_centre = {c: list(g.index) for c, g in clin.groupby("centre")}
    assert len(by_centre) == 2
    held_out = [ids[-1] for ids in by_centre.values()]
    train = [p for p in clin.index if p not in held_out]
    vol = {p: cohort.read_array(next(s for s in cohort.patient(p).scans if s.sequence == "T1c"
                                     and s.timepoint == "pre")) for p in clin.index}
    return cohort, train, held_out, vol


def test_scans_of_two_centres_and_a_rescaled_scanner_land_on_the_reference(centres):
    _, train, held_out, vol = centres
    std = HistogramStandardiser().fit([vol[p] for p in train], names=train)
    assert std.n_volumes_ == len(train)
    assert std.reference_[0] == pytest.approx(0.0) and std.reference_[-1] == pytest.approx(100.0)
    assert np.all(np.diff(std.reference_) > 0)
    a, b = (vol[p] for p in held_out)
    scaled = 1.7 * a                        # the same anatomy on a scanner with 1.7x the gain
    raw = {k: std.landmarks_of(v) for k, v in {"a": a, "b": b, "scaled": scaled}.items()}
    # before: the landmarks differ between centres and with the scanner scale
    assert np.max(np.abs(raw["scaled"] - raw["a"])) > 0.5 * np.ptp(raw["a"])
    assert np.max(np.abs(raw["b"] - raw["a"])) > 0.05 * np.ptp(raw["a"])
    for v in (a, b, scaled):
        m = body_mask(v)
        out = std.transform(v, m)
        assert out.shape == v.shape and out.dtype == np.float32
        # after: each scan's landmarks sit on the reference (0-100 scale)
        np.testing.assert_allclose(std.landmarks_of(out, m), std.reference_, atol=0.5)
    np.testing.assert_allclose(std.transform(scaled), std.transform(a), atol=1e-3)


def test_json_round_trip_and_bad_files(centres, tmp_path):
    _, train, held_out, vol = centres
    std = HistogramStandardiser(cutoff=(0.5, 99.5)).fit([vol[p] for p in train])
    path = save_standardisers(tmp_path / "histogram.json", {"T1c": std})
    doc = json.loads(path.read_text())
    assert doc["format"] == "npcai-histogram/1" and doc["sequences"]["T1c"]["n_volumes"] == len(train)
    back = load_standardisers(path)["T1c"]
    v = vol[held_out[0]]
    np.testing.assert_array_equal(back.transform(v), std.transform(v))
    assert back.cutoff == (0.5, 99.5)
    (tmp_path / "bad.json").write_text('{"format": "npcai-histogram/1", "sequences": {"T1c": {"reference": [1]}}}')
    with pytest.raises(NpcaiError, match=r"bad.json \[T1c\]: not a valid histogram"):
        load_standardisers(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(NpcaiError, match="not an npcai histogram landmarks file"):
        load_standardisers(tmp_path / "other.json")


def test_fit_on_cohort_reads_only_the_training_patients(centres, monkeypatch):
    cohort, train, held_out, _ = centres
    read = []
    original = Cohort.read_array

    def spy(self, scan):
        read.append(scan.patient_id)
        return original(self, scan)

    monkeypatch.setattr(Cohort, "read_array", spy)
    stds = fit_cohort_standardisers(cohort.root, train[:5], ["T1c"])
    assert set(read) == set(train[:5]) and not set(read) & set(held_out)
    assert stds["T1c"].n_volumes_ == 5
    with pytest.raises(NpcaiError, match="has a pre T2 scan"):
        fit_cohort_standardisers(cohort.root, train[:2], ["T2"])


def test_bad_input():
    with pytest.raises(NpcaiError, match="P7: the foreground has one intensity"):
        HistogramStandardiser().fit([np.full((2, 8, 8), 5.0)], masks=[np.ones((2, 8, 8), bool)], names=["P7"])
    with pytest.raises(NpcaiError, match="no training volume"):
        HistogramStandardiser().fit([])
    with pytest.raises(RuntimeError, match="not fitted"):
        HistogramStandardiser().transform(np.ones((2, 2)))
    with pytest.raises(ValueError, match="cutoff"):
        HistogramStandardiser(cutoff=(50, 10))
    with pytest.raises(ValueError, match="landmarks"):
        HistogramStandardiser(landmarks=(20, 10))


def test_roi_build_with_histogram_normalisation(centres, small_cohort, tmp_path):
    import shutil

    from npcai.imaging.normalise import normalise_volume, parse_normalisation
    from npcai.imaging.roi_cache import RoiDataset, build_roi

    _, train, held_out, vol = centres
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    landmarks = save_standardisers(tmp_path / "landmarks.json", fit_cohort_standardisers(cohort, train, ["T1c"]))
    norm = parse_normalisation(f"histogram:{landmarks}")
    assert str(norm).startswith(f"histogram:{landmarks.resolve()}#") and len(norm.digest) == 16
    assert parse_normalisation(str(norm)) == norm
    out = build_roi(cohort, "hist", "original", size=32, normalise=f"histogram:{landmarks}")
    ds = RoiDataset.open(cohort, "hist")
    assert ds.params["normalisation"] == str(norm)
    # the ROI holds the standardised intensities: the held-out patient's volume mapped by the landmarks
    std = load_standardisers(landmarks)["T1c"]
    mapped = std.transform(vol[held_out[0]])
    x = ds.images[ds.rows_of(held_out[0])].astype(np.float32)
    assert mapped.min() - 1 <= x.min() and x.max() <= mapped.max() + 1
    assert out.is_dir()
    with pytest.raises(NpcaiError, match="no histogram landmarks for sequence 'T2'"):
        normalise_volume(vol[held_out[0]], norm, channel="pre:T2")
    with pytest.raises(NpcaiError, match="needs the landmarks learnt on the training patients"):
        parse_normalisation("histogram")
    with pytest.raises(NpcaiError, match="landmarks file not found"):
        parse_normalisation(f"histogram:{tmp_path / 'missing.json'}")


def test_cli_learns_landmarks_on_the_training_split_only(centres, cli, tmp_path):
    cohort, train, held_out, _ = centres
    split = tmp_path / "split.csv"
    split.write_text("patient_id,split\n" + "".join(f"{p},train\n" for p in train[:4])
                     + "".join(f"{p},test\n" for p in held_out))
    out = tmp_path / "landmarks.json"
    r = cli("roi", "landmarks", cohort.root, "--split-from", split, "--out", out)
    assert r.code == 0, r
    assert load_standardisers(out)["T1c"].n_volumes_ == 4
    again = cli("roi", "landmarks", cohort.root, "--split-from", split, "--out", out)
    assert again.code == 2 and "exists" in again.stderr
    bad = cli("roi", "landmarks", cohort.root, "--split-from", split, "--out", tmp_path / "x.json", "--split", "val")
    assert bad.code == 2 and "no patient in split 'val' (splits: test, train)" in bad.stderr
