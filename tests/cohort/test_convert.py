"""One scan's conversion (npcai.cohort.convert): what ingest records matches what it wrote."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from npcai.cohort.convert import write_volume
from npcai.fsutil import file_sha256


@pytest.mark.parametrize("compress", [True, False])
def test_write_volume_returns_the_hash_of_the_written_file(tmp_path, compress):
    import SimpleITK as sitk

    arr = np.random.default_rng(0).integers(-100, 900, (4, 16, 16)).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.9, 0.9, 5.0))
    path = tmp_path / ("v.nii.gz" if compress else "v.nii")
    digest = write_volume(image, path, compress=compress)
    assert digest == file_sha256(path)
    back = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(back), arr) and back.GetSpacing() == pytest.approx((0.9, 0.9, 5.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_spawned_worker_imports_no_pandas():
    """Workers unpickle convert_scan's module; keeping pandas out of it halves a worker's start."""
    code = "import sys, npcai.cohort.convert, npcai.cohort.dicom_series; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
