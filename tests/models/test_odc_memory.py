"""ODC's samples and centroids memory against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from sslzoo.errors import SslzooError
from sslzoo.models.odc_memory import ODCMemory, last_occurrences

R = 1 / math.sqrt(2)


def filled() -> ODCMemory:
    """Four 2-d samples: normalised [.6, .8], [0, 1] (cluster 0), [1, 0], [0, -1] (cluster 1);
    cluster 2 empty."""
    memory = ODCMemory(feat_dim=2, num_classes=3, momentum=0.5, min_cluster=1)
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [0.0, -5.0]])
    memory.init_memory(features, torch.tensor([0, 0, 1, 1]))
    return memory


def test_init_memory_normalises_features_and_averages_centroids() -> None:
    memory = filled()
    assert memory.initialized
    torch.testing.assert_close(memory.feature_bank, torch.tensor([[0.6, 0.8], [0, 1], [1, 0], [0, -1.0]]))
    assert memory.label_bank.tolist() == [0, 0, 1, 1]
    # the empty cluster 2 keeps its (zero) centroid
    torch.testing.assert_close(memory.centroids, torch.tensor([[0.3, 0.9], [0.5, -0.5], [0.0, 0.0]]))


def test_samples_memory_moves_features_by_the_momentum_and_relabels_them() -> None:
    memory = filled()
    change = memory.update_samples_memory(torch.tensor([1, 2]), torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    # sample 1: 0.5 [0, 1] + 0.5 [1, 0] -> [R, R]; sample 2: 0.5 [1, 0] + 0.5 [0, 1] -> [R, R]
    torch.testing.assert_close(memory.feature_bank, torch.tensor([[0.6, 0.8], [R, R], [R, R], [0, -1.0]]))
    # both closest to centroid 0 ([.3, .9] . [R, R] = 0.85 > 0 = the others): sample 2 left cluster 1
    assert memory.label_bank.tolist() == [0, 0, 0, 1]
    assert change.item() == pytest.approx(0.5)
    memory.update_centroids_memory()
    torch.testing.assert_close(
        memory.centroids, torch.tensor([[(0.6 + 2 * R) / 3, (0.8 + 2 * R) / 3], [0, -1.0], [0, 0]])
    )


def test_the_momentum_weighs_the_new_feature() -> None:
    memory = filled()
    memory.momentum = 0.25
    memory.update_samples_memory(torch.tensor([1]), torch.tensor([[2.0, 0.0]]))
    # 0.75 [0, 1] + 0.25 [1, 0] = [0.25, 0.75], normalised
    norm = math.sqrt(0.25**2 + 0.75**2)
    torch.testing.assert_close(memory.feature_bank[1], torch.tensor([0.25 / norm, 0.75 / norm]))


def test_a_sample_twice_in_a_batch_keeps_its_last_row() -> None:
    memory = filled()
    memory.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    change = memory.update_samples_memory(torch.tensor([3, 3]), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    # both rows from the old [0, -1]: [R, -R] (label 0) then [-R, -R] (label 2); the last wins
    torch.testing.assert_close(memory.feature_bank[3], torch.tensor([-R, -R]))
    assert memory.label_bank[3].item() == 2
    assert change.item() == pytest.approx(1.0)  # both rows left cluster 1


def test_last_occurrences() -> None:
    # distinct values 3, 5, 7 last seen at positions 4, 2, 3
    assert last_occurrences(torch.tensor([5, 3, 5, 7, 3])).tolist() == [4, 2, 3]


def assert_centroids_are_member_means(memory: ODCMemory) -> None:
    for cluster in range(memory.num_classes):
        members = memory.feature_bank[memory.label_bank == cluster]
        torch.testing.assert_close(memory.centroids[cluster], members.mean(dim=0))


def test_a_small_cluster_is_refilled_with_half_of_the_largest() -> None:
    # cluster 0: a group around [1, 0] and a group around [0, 1]; cluster 1: one sample near
    # [1, 0], below min_cluster 2
    memory = ODCMemory(feat_dim=2, num_classes=2, momentum=0.5, min_cluster=2)
    near_x = [[1.0, 0.02 * i] for i in range(3)]
    near_y = [[0.02 * i, 1.0] for i in range(3)]
    memory.init_memory(torch.tensor(near_x + near_y + [[1.0, -0.05]]), torch.tensor([0] * 6 + [1]))
    memory.deal_with_small_clusters()
    # the lone sample joined cluster 0, whose 2-means split gave one group to cluster 1
    labels = memory.label_bank.tolist()
    group_x, group_y = {labels[i] for i in (0, 1, 2, 6)}, {labels[i] for i in (3, 4, 5)}
    assert len(group_x) == len(group_y) == 1 and group_x | group_y == {0, 1}
    assert_centroids_are_member_means(memory)


def test_a_small_clusters_samples_go_to_the_most_similar_kept_centroid() -> None:
    # clusters 0 (around [1, 0]) and 1 (around [0, 1]) of 3; cluster 2 holds [0.9, 0.1] alone
    memory = ODCMemory(feat_dim=2, num_classes=3, momentum=0.5, min_cluster=2)
    near_x = [[1.0, 0.02 * i] for i in range(3)]
    near_y = [[0.02 * i, 1.0] for i in range(3)]
    memory.init_memory(torch.tensor(near_x + near_y + [[0.9, 0.1]]), torch.tensor([0, 0, 0, 1, 1, 1, 2]))
    memory.deal_with_small_clusters()
    labels = memory.label_bank.tolist()
    # the sample moved to cluster 0, the largest then (4), which gave cluster 2 a part of it;
    # cluster 1 kept its samples
    assert labels[3:6] == [1, 1, 1]
    assert set(labels[:3] + labels[6:]) == {0, 2}
    assert_centroids_are_member_means(memory)


def test_too_many_clusters_for_the_data_is_refused() -> None:
    memory = ODCMemory(feat_dim=2, num_classes=2, momentum=0.5, min_cluster=5)
    memory.init_memory(torch.randn(6, 2), torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(SslzooError, match="min_cluster"):
        memory.deal_with_small_clusters()
