"""Ingest with worker processes writes the same cohort as without; --uncompressed writes .nii."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from npcai.cohort.ingest import ingest
from npcai.cohort.model import Cohort, pseudonym_map_path
from npcai.cohort.parallel import ordered_map, shared_workers
from npcai.errors import NpcaiError


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            if f.name == "cohort.json":
                doc = json.loads(data)
                doc["created_by"].pop("date")
                data = json.dumps(doc, sort_keys=True).encode()
            out[str(f.relative_to(root))] = data
    return out


def test_two_workers_write_the_same_cohort_as_one(small_export, small_cohort, tmp_path):
    # the same pseudonym map (and so the same UID salt) as the shared cohort: only the worker count differs
    again = tmp_path / "cohort"
    ingest(small_export / "dicom", clinical=small_export / "clinical.csv", contours=small_export / "contours",
           out=again, workers=2, pseudonyms=pseudonym_map_path(small_cohort))
    first, second = _files(small_cohort), _files(again)
    assert sorted(first) == sorted(second) and len(first) > 60
    assert [k for k in first if first[k] != second[k]] == []


def test_uncompressed_cohort_reads_like_the_compressed_one(small_export, small_cohort, tmp_path):
    import SimpleITK as sitk

    raw = tmp_path / "raw"
    ingest(small_export / "dicom", clinical=small_export / "clinical.csv", contours=small_export / "contours",
           out=raw, compress=False, pseudonyms=pseudonym_map_path(small_cohort))
    packed, plain = Cohort.load(small_cohort), Cohort.load(raw)
    a, b = packed.patients[0].scans[0], plain.patients[0].scans[0]
    assert a.image.endswith(".nii.gz") and b.image.endswith(".nii") and b.mask.endswith(".nii")
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(small_cohort / a.image)))
            == sitk.GetArrayFromImage(sitk.ReadImage(str(raw / b.image)))).all()
    assert a.mask_stats == b.mask_stats and a.spacing == b.spacing


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_whole_number(bad, small_export, tmp_path):
    with pytest.raises(NpcaiError, match="workers must be a whole number"):
        ingest(small_export / "dicom", clinical=small_export / "clinical.csv", out=tmp_path / "c", workers=bad)
    assert not (tmp_path / "c").exists()


def test_ordered_map_keeps_order_across_processes():
    items = list(range(-7, 7))
    assert ordered_map(abs, items, workers=2) == [abs(i) for i in items] == ordered_map(abs, items, workers=1)


def _pid(_item) -> int:
    import os

    return os.getpid()


def _spawned(pids) -> set[int]:
    import os

    return set(pids) - {os.getpid()}


def test_the_calling_process_computes_while_its_worker_starts():
    """workers=2 is the caller plus one spawned process; the caller does not wait idle."""
    import os

    pids = ordered_map(_pid, range(40), workers=2)
    assert os.getpid() in pids and len(_spawned(pids)) == 1


def _fail_on_negative(x: int) -> int:
    if x < 0:
        raise ValueError(f"item {x}")
    return x


def test_the_first_failing_item_in_order_raises_whoever_computed_it():
    """The caller may compute a later failing item before a worker returns an earlier one; the
    error raised is still the earlier item's, as with workers=1."""
    items = [1, 2, -3] + [4] * 20 + [-5] * 20
    for workers in (1, 2):
        with pytest.raises(ValueError, match="item -3"):
            ordered_map(_fail_on_negative, items, workers=workers)


def test_maps_within_shared_workers_reuse_one_pool():
    """Two maps in one shared_workers block use the same spawned worker (workers=2: one)."""
    with shared_workers():
        first = ordered_map(_pid, range(6), workers=2)
        second = ordered_map(_pid, range(6), workers=2)
    assert len(_spawned(first)) == 1 and _spawned(second) <= _spawned(first)
    assert _spawned(ordered_map(_pid, range(6), workers=2)).isdisjoint(_spawned(first))   # that pool is gone


def test_shared_workers_belong_to_their_thread():
    """Another thread's maps (e.g. a second ingest in the web tool) do not use this block's pool."""
    import threading

    with shared_workers():
        first = ordered_map(_pid, range(4), workers=2)
        other: list[int] = []
        thread = threading.Thread(target=lambda: other.extend(ordered_map(_pid, range(4), workers=2)))
        thread.start()
        thread.join()
    assert _spawned(other) and _spawned(other).isdisjoint(_spawned(first))


def test_compressed_volumes_carry_no_timestamp_and_no_temporary_is_left(small_cohort):
    """.nii.gz bytes depend only on the volume (gzip mtime 0), and the .nii written on the way is gone."""
    import gzip

    import SimpleITK as sitk

    co = Cohort.load(small_cohort)
    scan = co.patients[0].scans[0]
    for rel in (scan.image, scan.mask):
        data = (small_cohort / rel).read_bytes()
        assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0", rel      # gzip magic, MTIME = 0
        assert len(gzip.decompress(data)) > 352                                # a NIfTI-1 header and voxels
    assert sitk.ReadImage(str(small_cohort / scan.image)).GetSize()[2] == len(co.read_array(scan))
    leftovers = [p.name for d in ("images", "masks") for p in (small_cohort / d).iterdir() if p.name.startswith(".")]
    assert leftovers == []
