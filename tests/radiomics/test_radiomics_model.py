"""Selection and the elastic net are fitted on the training patients only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from npcai.errors import NpcaiError
from npcai.radiomics.model import CorrelationFilter, ModelSettings, fit_elastic_net


def _data(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    y = pd.Series(np.arange(n) % 2, index=[f"P{seed}{i:03d}" for i in range(n)])
    signal = y.to_numpy() + rng.normal(0, 0.7, n)
    X = pd.DataFrame({"signal": signal, "copy": 2 * signal + 1, "noise": rng.normal(0, 1, n),
                      "constant": np.ones(n), "big": 1000 + 50 * rng.normal(0, 1, n)}, index=y.index)
    return X, y


def test_correlation_filter_keeps_the_first_of_each_correlated_group():
    x = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [2.0, 2.0, 2.0]])
    assert CorrelationFilter(0.9).fit(x).keep_.tolist() == [0, 2]
    assert CorrelationFilter(1.0).fit(x).keep_.tolist() == [0, 1, 2]


def test_fit_selects_on_train_chooses_on_val_and_learns_the_signal():
    Xt, yt = _data(80, 1)
    Xv, yv = _data(30, 2)
    fitted = fit_elastic_net(Xt, yt, Xv, yv, ModelSettings(c_grid=(0.01, 0.1, 1.0)))
    assert fitted.train_patients == list(Xt.index) and fitted.val_patients == list(Xv.index)
    assert fitted.n_input == 5 and fitted.n_after_variance == 4 and fitted.n_after_correlation == 3
    assert "copy" not in fitted.coefficients and "constant" not in fitted.coefficients
    assert fitted.coefficients.get("signal", 0) > 0
    assert fitted.C in (0.01, 0.1, 1.0) and fitted.val_auc == fitted.grid["val_auc"].max()
    # the standardisation is the training patients' (never the validation or test ones')
    scale = fitted.pipeline.named_steps["scale"]
    np.testing.assert_allclose(scale.mean_, Xt.drop(columns="constant").mean().to_numpy())
    assert fitted.predict(Xv).shape == (30,)
    assert ((fitted.predict(Xv) >= 0) & (fitted.predict(Xv) <= 1)).all()


def test_one_class_and_bad_settings_are_refused():
    Xt, yt = _data(20, 1)
    with pytest.raises(NpcaiError, match="validation patients all have one label"):
        fit_elastic_net(Xt, yt, Xt.iloc[:3:2], yt.iloc[:3:2])
    with pytest.raises(NpcaiError, match="l1-ratio"):
        ModelSettings(l1_ratio=2)
    with pytest.raises(NpcaiError, match="c-grid"):
        ModelSettings(c_grid=(0.0,))
