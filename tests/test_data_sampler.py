"""The resumable distributed sampler: determinism, rank concatenation, exact resume."""

from __future__ import annotations

import pytest

from varclip.data.sampler import DistributedResumableSampler as Sampler


def test_deterministic_and_epochs_differ():
    a, b = Sampler(100, 8, seed=3), Sampler(100, 8, seed=3)
    assert list(a) == list(b)
    assert a.steps_per_epoch == 12 and len(list(a)) == 12
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(Sampler(100, 8, seed=4)) != list(b)
    flat = [i for batch in Sampler(96, 8, seed=3) for i in batch]
    assert sorted(flat) == list(range(96))  # a permutation: no repeats within an epoch


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ranks_concatenate_to_the_single_process_global_batch(world):
    n, per_rank, seed = 203, 5, 11
    single = Sampler(n, per_rank * world, world_size=1, rank=0, seed=seed)
    ranks = [Sampler(n, per_rank, world_size=world, rank=r, seed=seed) for r in range(world)]
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for s in ranks:
            s.set_epoch(epoch)
        per_rank_batches = [list(s) for s in ranks]
        for step, global_batch in enumerate(single):
            assert sum((b[step] for b in per_rank_batches), []) == global_batch
        assert all(len(b) == single.steps_per_epoch for b in per_rank_batches)


def test_resume_mid_epoch_is_exact():
    full = Sampler(50, 4, world_size=2, rank=1, seed=5)
    full.set_epoch(2)
    expected = list(full)
    resumed = Sampler(50, 4, world_size=2, rank=1, seed=5)
    resumed.set_position(2, 3)
    assert len(resumed) == len(expected) - 3
    assert list(resumed) == expected[3:]
    assert list(resumed) == expected  # the resume point applies to one pass only
    assert resumed.batch(2, 4) == expected[4]


def test_no_drop_last_pads_by_wrapping():
    s = Sampler(10, 2, world_size=2, rank=0, seed=0, drop_last=False)
    t = Sampler(10, 2, world_size=2, rank=1, seed=0, drop_last=False)
    assert s.steps_per_epoch == 3
    batches = list(s) + list(t)
    assert all(len(b) == 2 for b in batches)
    assert set(i for b in batches for i in b) == set(range(10))


def test_validation():
    with pytest.raises(ValueError):
        Sampler(10, 8, world_size=2, rank=0)  # no full global batch
    with pytest.raises(ValueError):
        Sampler(10, 2, world_size=2, rank=2)
    with pytest.raises(ValueError):
        Sampler(100, 8).set_position(0, 99)
