"""Endpoint labels: the median-PFS rule with censoring, 0/1 columns, --where filters, errors."""
import numpy as np
import pandas as pd
import pytest

from npcai.cohort.endpoints import endpoint_labels, filter_patients
from npcai.errors import NpcaiError


def _clinical(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame(cols, index=pd.Index([f"P{i:04d}" for i in range(1, n + 1)], name="patient_id"))


def test_pfs_median_labels_and_censoring():
    # months 10..80; median of 8 values = 45
    clin = _clinical(pfs_months=[10, 20, 30, 40, 50, 60, 70, 80], pfs_event=[1, 0, 1, 1, 0, 1, 0, 0])
    ep = endpoint_labels(clin, "pfs-median")
    assert ep.cutoff == 45
    # events at or before 45 -> 1; beyond 45 -> 0 whatever the event; censored <= 45 -> excluded
    assert ep.labels.to_dict() == {"P0001": 1, "P0003": 1, "P0004": 1, "P0005": 0, "P0006": 0,
                                   "P0007": 0, "P0008": 0}
    assert ep.excluded.index.tolist() == ["P0002"]
    assert ep.excluded_counts() == {"censored before median PFS": 1}
    assert ep.survival.loc["P0001"].tolist() == [10, 1]


def test_median_patient_with_event_is_high_risk():
    clin = _clinical(pfs_months=[10, 20, 30], pfs_event=[1, 1, 1])
    assert endpoint_labels(clin, "pfs-median").labels.to_dict() == {"P0001": 1, "P0002": 1, "P0003": 0}


def test_missing_survival_values_are_excluded_with_reason():
    clin = _clinical(pfs_months=[10, np.nan, 30, 40], pfs_event=[1, 1, 0, 1])
    ep = endpoint_labels(clin, "pfs-median")
    assert "P0002" in ep.excluded.index
    assert ep.excluded.loc["P0002", "reason"] == "missing pfs_months or pfs_event"


def test_binary_columns_named_and_custom():
    clin = _clinical(distant_metastasis=[0, 1, np.nan, 1], residual_tumour=[1, 0, 0, 0],
                     dmfs_months=[5, 6, 7, 8], dmfs_event=[0, 1, 0, 1], my_flag=[0, 0, 1, 1])
    dm = endpoint_labels(clin, "distant-metastasis")
    assert dm.labels.to_dict() == {"P0001": 0, "P0002": 1, "P0004": 1}
    assert dm.excluded_counts() == {"missing distant_metastasis": 1}
    assert dm.survival is not None and dm.survival.shape == (3, 2)
    assert endpoint_labels(clin, "residual-tumour").labels.sum() == 1
    assert endpoint_labels(clin, "my_flag").labels.tolist() == [0, 0, 1, 1]


def test_missing_column_and_non_binary_values_name_the_problem():
    clin = _clinical(age=[50, 60], treatment=["CCRT", "IC+CCRT"])
    with pytest.raises(NpcaiError, match="column 'pfs_months' missing"):
        endpoint_labels(clin, "pfs-median")
    with pytest.raises(NpcaiError, match="'distant_metastasis' missing"):
        endpoint_labels(clin, "distant-metastasis")
    with pytest.raises(NpcaiError, match="not a named endpoint.*nor a clinical column"):
        endpoint_labels(clin, "no_such_endpoint")
    with pytest.raises(NpcaiError, match="column 'age' has value '50' for patient P0001"):
        endpoint_labels(clin, "age")


def test_where_filters_and_validates():
    clin = _clinical(treatment=["CCRT", "IC+CCRT", "CCRT"], age=[40, 50, 60])
    assert filter_patients(clin, 'treatment == "CCRT"').index.tolist() == ["P0001", "P0003"]
    assert filter_patients(clin, "age >= 50 and treatment == 'CCRT'").index.tolist() == ["P0003"]
    assert filter_patients(clin, None) is clin
    with pytest.raises(NpcaiError, match="therapy"):
        filter_patients(clin, 'therapy == "CCRT"')
    with pytest.raises(NpcaiError, match="no patient matches"):
        filter_patients(clin, "age > 100")
    with pytest.raises(NpcaiError, match="not valid syntax"):
        filter_patients(clin, "age >>> 3")


def test_endpoint_on_phantom_cohort(small_cohort):
    from npcai.cohort.model import Cohort

    clin = Cohort.load(small_cohort).clinical()
    ep = endpoint_labels(clin, "pfs-median")
    assert set(ep.labels.unique()) <= {0, 1}
    assert len(ep.labels) + len(ep.excluded) == len(clin)
    assert "hospital_id" not in clin.columns
