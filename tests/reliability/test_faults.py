"""One test per fault of issue 18 that the CLI error layer, fsutil and ingest own: usage
errors, Ctrl-C, leftovers of killed processes, full and read-only disks, absurd sizes, and the
DICOM defects (a missing first slice cropping tumour, the missing-slice message, symlinks).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cohort"))
import ingest_helpers as h  # noqa: E402

from npcai.cli import _rerun_hint  # noqa: E402

PY = sys.executable
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _one_error_line(r) -> str:
    """The one ``error:`` line, last on stderr (progress bars and warnings may come before)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert r.code == 2, r
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in r.stderr, r
    return errors[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


# ------------------------------------------------------------------ usage errors
@pytest.mark.parametrize("argv, option", [
    (["phantom", "OUT", "--patients", "abc"], "--patients"),
    (["roi", "build", "C", "--variant", "segmented", "--name", "n", "--size", "abc"], "--size"),
    (["train", "C", "--out", "R", "--epochs", "abc"], "--epochs"),
    (["segment", "train", "C", "--out", "S", "--epochs", "abc"], "--epochs"),
    (["evaluate", "RUN", "--n-boot", "abc"], "--n-boot"),
    (["explain", "RUN", "--out", "X", "--top", "abc"], "--top"),
    (["study", "run", "peritumoral", "--epochs", "abc"], "--epochs"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_option_and_value(cli, argv, option):
    """Was a 4-line usage box (issue 18, item 8)."""
    line = _one_error_line(cli(*argv))
    assert line.startswith(f"error: {option}: 'abc' is not an integer"), line


def test_unknown_option_and_missing_argument_are_one_line(cli):
    assert "--bogus" in _one_error_line(cli("phantom", "OUT", "--bogus"))
    assert "OUT" in _one_error_line(cli("phantom"))
    assert "--out" in _one_error_line(cli("ingest", "EXPORT", "--clinical", "c.csv"))


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing(tmp_path, cli, monkeypatch):
    import npcai.cohort.phantom.generate as generate

    real_track = generate.track

    def track_then_ctrl_c(iterable, description, total=None):
        for i, item in enumerate(real_track(iterable, description, total)):
            if i == 1:        # files of the first patient are written: now the user presses Ctrl-C
                signal.raise_signal(signal.SIGINT)
            yield item

    monkeypatch.setattr(generate, "track", track_then_ctrl_c)
    # the handler the process started with: Python's default_int_handler, or SIG_IGN where the test
    # run itself was started in the background by a non-interactive shell (SIGINT ignored, inherited)
    before = signal.getsignal(signal.SIGINT)
    r = cli("phantom", tmp_path / "export", "--patients", "3", "--size", "64", "--slices", "2")
    assert r.code == 130, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1] == "interrupted; nothing was kept; rerun the same command", r
    assert not [ln for ln in lines if ln.startswith(("error", "Traceback", "Aborted"))], r
    assert sorted(os.listdir(tmp_path)) == []
    assert signal.getsignal(signal.SIGINT) is before     # the CLI restored the handler it found


def test_ctrl_c_hint_names_resume_for_commands_that_can_continue():
    assert "--resume" in _rerun_hint(["train", "C", "--out", "R"])
    assert "--resume" in _rerun_hint(["segment", "train", "C", "--out", "S"])
    assert "--resume" in _rerun_hint(["study", "run", "peritumoral", "--cohort", "C"])
    assert "--resume" not in _rerun_hint(["phantom", "OUT"])
    assert "--resume" not in _rerun_hint(["roi", "build", "C", "--variant", "original", "--name", "o"])


def test_sigint_to_a_real_process_exits_130(tmp_path):
    """The signal path end to end: a phantom being written, SIGINT from outside."""
    proc = subprocess.Popen([PY, "-m", "npcai", "phantom", str(tmp_path / "export"), "--patients", "400",
                             "--size", "64", "--slices", "2"], env={**os.environ, "PYTHONPATH": SRC},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = 60
    while deadline > 0 and not any(".partial" in p for p in os.listdir(tmp_path)):
        try:
            proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            deadline -= 0.1
    assert proc.poll() is None, "the phantom finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted; ")
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ leftovers of killed processes
_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from npcai.fsutil import atomic_output_dir
    with atomic_output_dir(sys.argv[1]) as tmp:
        (tmp / "half.txt").write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_leftover_of_a_killed_process_is_removed_by_the_next_run(tmp_path, cli):
    out = tmp_path / "export"
    r = subprocess.run([PY, "-c", _KILLED_WRITER, str(out)], env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == -signal.SIGKILL
    assert len([p for p in _leftovers(tmp_path) if not p.endswith(".lock")]) == 1   # kill -9 left it
    r = cli("phantom", out, "--patients", "2", "--size", "64", "--slices", "2")
    assert r.code == 0, r
    assert _leftovers(tmp_path) == [] and (out / "clinical.csv").is_file()


def test_a_live_writers_folder_is_not_removed(tmp_path):
    from npcai.fsutil import atomic_output_dir, remove_stale_partials

    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        assert remove_stale_partials(out) == []          # the lock is held: someone is writing
        assert tmp.is_dir()
        (tmp / "done.txt").write_text("x")
    assert (out / "done.txt").is_file() and _leftovers(tmp_path) == []


# ------------------------------------------------------------------ full and read-only disks (real tmpfs)
@pytest.fixture
def tiny_disk(tmp_path):
    """A 300 kB tmpfs (needs mount rights, which a container may lack: then the test skips and the
    monkeypatched full-disk and permission cases of test_bad_inputs.py cover the same paths)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); the monkeypatched "
                    "faults of test_bad_inputs.py still run")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_naming_the_output_and_leaves_nothing(tiny_disk, cli):
    out = tiny_disk / "export"
    line = _one_error_line(cli("phantom", out, "--patients", "8", "--size", "64", "--slices", "4"))
    assert line.startswith(f"error: {out}: No space left on device; "), line
    assert os.listdir(tiny_disk) == []


def test_read_only_disk_is_one_line_naming_the_output(tiny_disk, cli):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        out = tiny_disk / "export"
        line = _one_error_line(cli("phantom", out, "--patients", "2", "--size", "64", "--slices", "2"))
        assert line.startswith(f"error: {out}: Read-only file system; "), line
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)


# ------------------------------------------------------------------ absurd sizes
def test_absurd_size_is_refused_with_the_limit_before_allocating(tmp_path, cli, monkeypatch):
    import npcai.cohort.phantom.generate as generate

    monkeypatch.setattr(generate, "atomic_output_dir", lambda *a, **k: pytest.fail("allocated"))
    line = _one_error_line(cli("phantom", tmp_path / "e", "--size", "100000"))
    assert "--size 100000" in line and "at most 2048" in line and "GB" in line


# ------------------------------------------------------------------ DICOM defects
def _export_with_contour(root: Path, *, tumour_on_first_slice: bool) -> Path:
    """One patient, 5 slices 3 mm apart from z = 10 mm; the contour covers all five."""
    vol = h.blob_volume((5, 16, 16))
    h.write_series(root / "dicom" / "H1" / "s", vol, patient_id="H1")
    mask = h.blob_mask((5, 16, 16))
    if tumour_on_first_slice:
        mask[0, 6:10, 6:10] = 1                              # 16 tumour voxels on slice z = 10 mm
    h.write_label(root / "contours" / "H1_pre_T1c.nii.gz", mask, (0.8, 0.8, 3.0), (-25.0, -25.0, 10.0))
    (root / "clinical.csv").write_text("hospital_id\nH1\n")
    (root / "dicom" / "H1" / "s" / "005.dcm").unlink()     # the first slice (files are numbered in reverse)
    return root


def test_missing_first_slice_with_tumour_is_refused_naming_the_voxels_lost(tmp_path, cli):
    exp = _export_with_contour(tmp_path / "export", tumour_on_first_slice=True)
    out = tmp_path / "cohort"
    line = _one_error_line(cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv",
                               "--contours", exp / "contours", "--out", out))
    assert "H1_pre_T1c.nii.gz" in line and "16 tumour voxel(s)" in line and "10.0 mm" in line, line
    assert "nodes" not in line          # the node blob lies on slices the series has
    assert not out.exists()


def test_missing_first_slice_without_contour_there_still_ingests(tmp_path, cli):
    exp = _export_with_contour(tmp_path / "export", tumour_on_first_slice=False)
    r = cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv", "--contours", exp / "contours",
            "--out", tmp_path / "cohort")
    assert r.code == 0, r


def test_missing_slice_message_names_the_right_pair_and_spacing(tmp_path, cli):
    """5 mm slices at 10, 15, 20, 25 mm without the one at 15: the median step (7.5) was reported."""
    exp = tmp_path / "export"
    h.write_series(exp / "dicom" / "H1" / "s", h.blob_volume((4, 16, 16)), patient_id="H1",
                   spacing=(0.8, 0.8, 5.0))
    (exp / "dicom" / "H1" / "s" / "003.dcm").unlink()        # slice k=1 at z = 15 mm
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    line = _one_error_line(cli("ingest", exp / "dicom", "--clinical", exp / "clinical.csv",
                               "--out", tmp_path / "cohort"))
    assert "between 10.00 and 20.00 mm" in line and "004.dcm and 002.dcm" in line, line
    assert "step 10.00 mm" in line and "5.00 mm apart" in line and "7.50" not in line, line
    assert "about 1 slice(s) missing" in line


def test_symlinked_dicom_folder_is_followed(tmp_path, cli):
    real = tmp_path / "pacs"
    h.write_series(real / "H1" / "s", h.blob_volume((3, 16, 16)), patient_id="H1")
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "dicom").symlink_to(real, target_is_directory=True)
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    r = cli("ingest", exp, "--clinical", exp / "clinical.csv", "--out", tmp_path / "cohort")
    assert r.code == 0, r
    from npcai.cohort.model import Cohort

    assert len(Cohort.load(tmp_path / "cohort").scans()) == 1


def test_dangling_dicom_link_is_named(tmp_path, cli):
    exp = tmp_path / "export"
    exp.mkdir()
    (exp / "dicom").symlink_to(tmp_path / "unmounted", target_is_directory=True)
    (exp / "clinical.csv").write_text("hospital_id\nH1\n")
    line = _one_error_line(cli("ingest", exp, "--clinical", exp / "clinical.csv", "--out", tmp_path / "c"))
    assert "dicom" in line and "lead nowhere" in line, line


def test_truncated_volume_is_refused_not_zero_filled(tmp_path):
    """SimpleITK reads a truncated .nii.gz and fills the rest with zeros; npcai refuses it."""
    import SimpleITK as sitk

    from npcai.cohort.contours import read_volume
    from npcai.errors import NpcaiError

    path = tmp_path / "H1_T1c.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(4 * 32 * 32, dtype=np.int16).reshape(4, 32, 32)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NpcaiError, match="truncated or corrupt"):
        read_volume(path)


# ------------------------------------------------------------------ real-data tests under CI
def test_missing_shared_data_fails_under_ci_and_skips_locally(tmp_path, monkeypatch):
    from shared_data import require_shared

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        require_shared(tmp_path / "realdata", "the OpenKBP CT sample")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_shared(tmp_path / "realdata", "the OpenKBP CT sample")
    assert require_shared(tmp_path, "a folder that exists") == tmp_path


def test_ctrl_c_during_lightning_training_exits_130_with_the_resume_hint(small_cohort, tmp_path, cli, monkeypatch):
    """Lightning turns a KeyboardInterrupt into exit(1); the CLI's own interrupt passes through it."""
    from npcai.segmentation.lightning_module import SegmentationModule

    def step_then_ctrl_c(self, batch, batch_idx):
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(SegmentationModule, "training_step", step_then_ctrl_c)
    r = cli("segment", "train", small_cohort, "--out", tmp_path / "seg", "--arch", "unet", "--encoder", "resnet18",
            "--encoder-depth", "3", "--no-pretrained", "--size", "64", "--batch-size", "4", "--epochs", "1")
    assert r.code == 130, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[-1] == "interrupted; rerun the same command with --resume to continue", r
    assert "Traceback" not in r.stderr and "Detected KeyboardInterrupt" not in r.stderr + r.stdout
