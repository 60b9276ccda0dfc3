"""VOC AP (test AP of the SVM benchmarks) and scikit-learn's AP (their CV score) against hand computations."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from sslzoo.benchmarks.voc_ap import (
    average_precision,
    average_precision_batch,
    mean_ap,
    voc_ap,
    voc_ap_batch,
)


def test_voc_ap_by_hand_with_a_difficult_image():
    # scores   0.9  0.8  0.75 0.7  0.5  0.4
    # targets  +1   -1   0    +1   -1   +1      (0 = difficult: left out)
    # ranked without the difficult image: + - + - +, 3 positives
    #   precision 1, 1/2, 2/3, 2/4, 3/5;  recall 1/3, 1/3, 2/3, 2/3, 1
    #   precision made monotone from the right: 1, 2/3, 2/3, 3/5, 3/5
    #   AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45 = 0.7556
    # (the 11-point VOC07 AP would be (4 * 1 + 3 * 2/3 + 4 * 3/5) / 11 = 0.7636; counting the
    #  difficult image as a negative: + - - + - + gives 1/3 + 1/3 * 2/4 + 1/3 * 3/6 = 0.6667)
    scores = np.array([0.9, 0.8, 0.75, 0.7, 0.5, 0.4])
    targets = np.array([1, -1, 0, 1, -1, 1])
    assert voc_ap(scores, targets) == pytest.approx(34 / 45, abs=1e-12)
    counted = np.where(targets == 0, -1, targets)
    assert voc_ap(scores, counted) == pytest.approx(2 / 3, abs=1e-12)


def test_voc_ap_order_and_ties():
    # the rows may come in any order
    scores = np.array([0.4, 0.75, 0.9, 0.5, 0.7, 0.8])
    targets = np.array([1, 0, 1, -1, 1, -1])
    assert voc_ap(scores, targets) == pytest.approx(34 / 45, abs=1e-12)
    # tied scores are separate points, the later row first (np.argsort(...)[::-1]):
    # [0.5 (+), 0.5 (-)] ranks the negative first -> precision 0, 1/2 -> AP 1/2
    assert voc_ap(np.array([0.5, 0.5]), np.array([1, -1])) == pytest.approx(0.5)
    assert voc_ap(np.array([0.5, 0.5]), np.array([-1, 1])) == pytest.approx(1.0)


def test_voc_ap_without_positives_is_nan_and_left_out_of_the_mean():
    assert math.isnan(voc_ap(np.array([0.3, 0.2]), np.array([-1, 0])))
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3]])
    targets = np.array([[1, -1], [-1, -1], [1, 0]])
    # class 0: + - + -> precision 1, 1/2, 2/3 -> AP 1/2 * 1 + 1/2 * 2/3 = 5/6; class 1: no positive
    overall, per_class = mean_ap(scores, targets)
    assert per_class[0] == pytest.approx(5 / 6)
    assert math.isnan(per_class[1])
    assert overall == pytest.approx(5 / 6)


def test_batched_voc_ap_equals_the_plain_one():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(50, 40)), 1)  # rounding makes ties
    targets = rng.choice([1, -1, 0], size=(50, 40), p=[0.3, 0.6, 0.1])
    targets[0] = -1  # a row without positives
    batch = voc_ap_batch(
        torch.from_numpy(scores), torch.from_numpy(targets == 1), torch.from_numpy(targets != 0)
    )
    for row in range(len(scores)):
        expected = voc_ap(scores[row], targets[row])
        if math.isnan(expected):
            assert math.isnan(float(batch[row]))
        else:
            assert float(batch[row]) == pytest.approx(expected, abs=1e-12)


def test_average_precision_by_hand():
    # scores 0.9 (+), 0.6 (-), 0.6 (+), 0.2 (-): the tied pair is one threshold
    #   thresholds 0.9: P 1, R 1/2;  0.6: P 2/3, R 1;  AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    scores = np.array([0.9, 0.6, 0.6, 0.2])
    positive = np.array([1, -1, 1, -1])
    assert average_precision(scores, positive) == pytest.approx(5 / 6)
    assert average_precision(scores, -np.ones(4)) == 0.0  # no positive: 0 as scikit-learn


def test_average_precision_matches_scikit_learn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(40, 30)), 1)
    labels = np.where(rng.random((40, 30)) < 0.3, 1, -1)
    valid = rng.random((40, 30)) < 0.8
    labels[0] = -1
    batch = average_precision_batch(
        torch.from_numpy(scores), torch.from_numpy(labels > 0), torch.from_numpy(valid)
    )
    for row in range(len(scores)):
        y, s = labels[row][valid[row]], scores[row][valid[row]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no positive class found"
            expected = average_precision_score(y, s)
        assert average_precision(s, y) == pytest.approx(expected, abs=1e-12)
        assert float(batch[row]) == pytest.approx(expected, abs=1e-12)
