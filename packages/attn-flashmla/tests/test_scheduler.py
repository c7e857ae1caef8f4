"""The tile scheduler (pure Python): coverage, balance, splits, zero-length sequences."""

from __future__ import annotations

import random

import pytest

from attn_flashmla.scheduler import FIXED_OVERHEAD_TILES, default_num_parts, num_tiles, schedule_decode


def _check(seqlens, num_parts, block_n=64, overhead=FIXED_OVERHEAD_TILES):
    sched = schedule_decode(seqlens, num_parts, block_n, overhead)
    chunks = sched.chunks()
    assert len(chunks) == num_parts
    # Every tile of every sequence exactly once; split indices 0..n-1 in order; offsets consistent.
    seen = {i: [] for i in range(len(seqlens))}
    for work in chunks:
        for seq, t0, t1, split in work:
            assert 0 <= t0 < t1 <= num_tiles(seqlens[seq], block_n), (seq, t0, t1)
            seen[seq].append((split, t0, t1))
    offsets = sched.split_offsets.tolist()
    assert offsets[0] == 0
    for seq, pieces in seen.items():
        pieces.sort()
        assert [p[0] for p in pieces] == list(range(len(pieces))), pieces
        covered = [t for _, t0, t1 in pieces for t in range(t0, t1)]
        assert covered == list(range(num_tiles(seqlens[seq], block_n))), (seq, pieces)
        assert offsets[seq + 1] - offsets[seq] == len(pieces)
    # Balance: no part costs more than the payload ceil(total / parts) + overhead.
    total = sum(num_tiles(s, block_n) + overhead for s in seqlens)
    payload = -(-total // num_parts) + overhead
    for work in chunks:
        cost = sum(t1 - t0 + overhead for _, t0, t1, _ in work)
        assert cost <= payload, (cost, payload)
    return sched


def test_uniform_batch_is_one_sequence_per_part_or_less():
    sched = _check([4096] * 8, 8)
    assert sched.total_splits == 8


@pytest.mark.parametrize("num_parts", [1, 3, 16, 132])
def test_skewed_batch_is_balanced(num_parts):
    # One very long sequence among short ones: it must be split across many parts.
    lens = [32768] + [512] * 63
    sched = _check(lens, num_parts)
    counts = [b - a for a, b in zip(sched.split_offsets[:-1].tolist(), sched.split_offsets[1:].tolist())]
    if num_parts >= 16:
        assert counts[0] >= num_parts // 4  # the long one is spread out
    assert max(counts) <= num_parts


def test_zero_length_sequences_get_one_empty_tile():
    sched = _check([0, 100, 0, 0, 5000, 0], 7)
    chunks = [c for work in sched.chunks() for c in work if c[0] in (0, 2, 3, 5)]
    assert sorted((s, t0, t1) for s, t0, t1, _ in chunks) == [(0, 0, 1), (2, 0, 1), (3, 0, 1), (5, 0, 1)]


def test_more_parts_than_work_leaves_empty_parts():
    sched = _check([10, 20], 50)
    assert sum(1 for work in sched.chunks() if not work) > 0


def test_random_batches():
    rng = random.Random(0)
    for _ in range(200):
        b = rng.randint(1, 40)
        lens = [max(0, int(rng.normalvariate(2000, 1500))) if rng.random() > 0.1 else 0 for _ in range(b)]
        _check(lens, rng.randint(1, 140), rng.choice([16, 32, 64]), rng.choice([0, 1, 5, 10]))


def test_default_num_parts_fills_the_gpu_once():
    assert default_num_parts(132, 1, 128, 64) == 66
    assert default_num_parts(132, 1, 16, 16) == 132
    assert default_num_parts(132, 8, 64, 64) == 16
    assert default_num_parts(4, 8, 512, 64) == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        schedule_decode([1, -1], 4)
    with pytest.raises(ValueError):
        schedule_decode([1], 0)
