"""An output never deletes or overwrites an input (issue 18): an output folder that is, contains
or lies inside an input is refused before anything happens, and --overwrite only replaces a
folder carrying npcai's marker."""
from __future__ import annotations

import shutil

import pytest

from npcai.errors import NpcaiError
from npcai.fsutil import OUTPUT_MARKER, atomic_output_dir, check_output_path, check_replaceable

from .conftest import tree


def _refused(r) -> str:
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.code == 2 and len(errors) == 1, r
    return " ".join(r.stderr.split())


def test_ingest_into_the_parent_of_the_export_deletes_nothing(cli, small_export, tmp_path):
    parent = tmp_path / "hospital"
    export = parent / "export"
    shutil.copytree(small_export, export)
    (parent / "unrelated.txt").write_text("the radiologist's notes")
    before = tree(parent)
    r = cli("ingest", export / "dicom", "--clinical", export / "clinical.csv", "--out", parent, "--overwrite")
    assert tree(parent) == before                       # the export and the unrelated file are intact
    assert "the output folder contains the input" in _refused(r)


def test_train_into_its_own_cohort_deletes_nothing(cli, roi_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(roi_cohort, cohort)
    before = tree(cohort)
    r = cli("train", cohort, "--roi", "box", "--endpoint", "pfs-median", "--backbone", "resnet18",
            "--no-pretrained", "--epochs", "1", "--out", cohort, "--overwrite")
    assert tree(cohort) == before
    assert "the output folder is the input" in _refused(r)


def test_overwrite_never_replaces_a_folder_npcai_did_not_write(cli, roi_cohort, tmp_path):
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "thesis.docx").write_text("two years of work")
    r = cli("train", roi_cohort, "--roi", "box", "--endpoint", "pfs-median", "--backbone", "resnet18",
            "--no-pretrained", "--epochs", "1", "--out", mine, "--overwrite")
    text = _refused(r)
    assert "thesis.docx" in text and OUTPUT_MARKER in text
    assert (mine / "thesis.docx").read_text() == "two years of work"


@pytest.mark.parametrize("args", [
    lambda c, t: ("ensemble", t / "r1", t / "r2", "--out", t / "r1"),
    lambda c, t: ("explain", t / "r1", "--out", t / "r1" / "explain"),
    lambda c, t: ("compare", t / "r1", t / "r2", "--out", t),
    lambda c, t: ("segment", "train", c, "--out", c / "seg", "--no-pretrained"),
    lambda c, t: ("radiomics", "train", c, "--roi", "box", "--endpoint", "pfs-median", "--out", c / "rad"),
    lambda c, t: ("radiomics", "train", c, "--roi", "box", "--endpoint", "pfs-median", "--split-from", t / "r1",
                  "--out", t / "r1" / "rad"),
    lambda c, t: ("study", "run", "peritumoral", "--cohort", c, "--out", c.parent),     # contains the cohort
    lambda c, t: ("study", "run", "peritumoral", "--cohort", c, "--out", c / "study"),
    lambda c, t: ("ingest", t / "r1", "--clinical", t / "r1" / "clinical.csv", "--out", t / "r1" / "cohort"),
])
def test_every_command_refuses_an_output_overlapping_an_input(cli, roi_cohort, tmp_path, args):
    for run in ("r1", "r2"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "clinical.csv").write_text("hospital_id\nH1\n")
    before = tree(tmp_path)
    r = cli(*args(roi_cohort, tmp_path))
    assert "the output folder" in _refused(r) and "the input" in r.stderr
    assert tree(tmp_path) == before


def test_check_output_path_cases(tmp_path):
    (tmp_path / "in").mkdir()
    assert check_output_path(tmp_path / "out", [tmp_path / "in", None]) == tmp_path / "out"
    assert check_output_path(tmp_path / "in2", [tmp_path / "in"]) == tmp_path / "in2"    # a sibling prefix
    for out, how in ((tmp_path / "in", "is"), (tmp_path, "contains"), (tmp_path / "in" / "x", "lies inside")):
        with pytest.raises(NpcaiError, match=f"the output folder {how} the input"):
            check_output_path(out, [tmp_path / "in"])
    (tmp_path / "link").symlink_to(tmp_path / "in")
    with pytest.raises(NpcaiError, match="the output folder is the input"):
        check_output_path(tmp_path / "link", [tmp_path / "in"])


def test_only_marked_folders_are_replaced(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / OUTPUT_MARKER).is_file()
    with pytest.raises(NpcaiError, match="pass --overwrite"):
        check_replaceable(out, overwrite=False)
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "b.txt"]
    (out / OUTPUT_MARKER).unlink()                       # now it looks like the user's folder
    with pytest.raises(NpcaiError, match="is not an output npcai wrote"):
        with atomic_output_dir(out, overwrite=True):
            pass
    assert (out / "b.txt").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NpcaiError, match="is a file, not a folder"):
        check_replaceable(tmp_path / "file", overwrite=True)
