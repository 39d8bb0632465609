"""C-for-benefit (van Klaveren 2018) on hand-computed examples."""
from __future__ import annotations

import numpy as np
import pytest

from npcai.decision.benefit import binary_outcome_at, c_for_benefit, c_for_benefit_survival, match_on_benefit
from npcai.errors import NpcaiError


def test_hand_computed_example():
    # pairs by predicted benefit: (0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.4, 0.4)
    # observed pair benefit = outcome(control) - outcome(experimental): 0, -1, 1, 1
    # pairs of pairs with different observed benefit: (1,2) discordant, (1,3) (1,4) (2,3) (2,4) concordant
    r = c_for_benefit([0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0, 1, 1, 1, 1],
                      [0, 0, 1, 1, 0, 1, 0, 0], n_boot=0)
    assert r.n_pairs == 4 and r.n_comparable == 5 and r.n_unmatched == 0
    assert r.c_for_benefit == pytest.approx(4 / 5)
    assert r.pairs["observed"].tolist() == [0, -1, 1, 1]
    assert r.pairs["predicted"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_tied_predictions_count_one_half_and_perfect_ranking():
    # two pairs, observed benefits 1 and 0, equal predicted benefit -> 0.5
    r = c_for_benefit([0.2, 0.2, 0.2, 0.2], [0, 0, 1, 1], [1, 0, 0, 0], n_boot=0)
    assert r.c_for_benefit == pytest.approx(0.5)
    # perfect ranking: the more benefit predicted, the more observed
    r = c_for_benefit([0.0, 0.5, 0.0, 0.5], [0, 0, 1, 1], [0, 1, 0, 0], n_boot=0)
    assert r.c_for_benefit == pytest.approx(1.0)
    r = c_for_benefit([0.5, 0.0, 0.5, 0.0], [0, 0, 1, 1], [0, 1, 0, 0], n_boot=0)
    assert r.c_for_benefit == pytest.approx(0.0)


def test_unequal_arms_match_nearest_without_replacement():
    # controls at 0.1 and 0.9; experimental at 0.0, 0.12, 0.8: 0.1 takes 0.12, 0.9 takes 0.8
    pairs = match_on_benefit([0.1, 0.9, 0.0, 0.12, 0.8], [0, 0, 1, 1, 1])
    assert sorted(pairs) == [(0, 3), (1, 4)]
    r = c_for_benefit([0.1, 0.9, 0.0, 0.12, 0.8], [0, 0, 1, 1, 1], [1, 0, 0, 0, 1], n_boot=0)
    assert r.n_pairs == 2 and r.n_unmatched == 1


def test_censored_before_horizon_is_left_out():
    y = binary_outcome_at([10, 70, 30, 61], [1, 0, 0, 1], 60)
    np.testing.assert_array_equal(y[[0, 1, 3]], [1, 0, 0])
    assert np.isnan(y[2])
    r = c_for_benefit_survival([0.1, 0.2, 0.3, 0.1, 0.2, 0.3], [0, 0, 0, 1, 1, 1],
                               [10, 70, 30, 70, 12, 80], [1, 0, 0, 0, 1, 0], 60, n_boot=50)
    assert r.n_excluded == 1 and r.n_pairs == 2
    assert 0 <= r.low <= r.high <= 1


@pytest.mark.parametrize("kwargs, msg", [
    (dict(predicted_benefit=[0.1, 0.2], treated=[0, 2], outcome=[0, 1]), "coded 0"),
    (dict(predicted_benefit=[0.1, 0.2, 0.3], treated=[0, 1], outcome=[0, 1]), "one of each"),
    (dict(predicted_benefit=[0.1, np.nan, 0.3, 0.4], treated=[0, 0, 1, 1], outcome=[0, 1, 0, 1]), "missing"),
    (dict(predicted_benefit=[0.1, 0.2, 0.3, 0.4], treated=[0, 1, 1, 1], outcome=[0, 1, 0, 1]), "both treatments"),
    (dict(predicted_benefit=[0.1, 0.2, 0.3, 0.4], treated=[0, 0, 1, 1], outcome=[0, 2, 0, 1]), "0/1"),
])
def test_bad_input(kwargs, msg):
    with pytest.raises(NpcaiError, match=msg):
        c_for_benefit(**kwargs, n_boot=0)
