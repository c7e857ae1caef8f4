"""CPU tier: the sm90 forward's persistent tile schedule (the kernel traces this same function).

Every schedule must visit each (m_block, head, batch) exactly once, or a tile would be skipped or written
twice; and the causal ``lpt`` schedule must spread the work evenly over the CTAs, which is its purpose.
Work is counted in key blocks per tile (the main loop's trip count) plus one for the tile's prologue and
epilogue.
"""

import math

import pytest

from attn_cutlass.interface import CAUSAL_SCHEDULES, causal_schedule
from attn_cutlass.kernels.flash_fwd_sm90 import tile_config, tile_coords

H200_SMS = 132


def _shape(seqlen, heads, batch, head_dim, consumer_wgs=2):
    tile_m, tile_n, _ = tile_config(head_dim, consumer_wgs)
    num_m_blocks = math.ceil(seqlen / tile_m)
    return tile_m, tile_n, num_m_blocks, num_m_blocks * heads * batch


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("snake", [0, 1])
@pytest.mark.parametrize(
    "num_m_blocks, heads, batch, num_ctas, hb_chunk",
    [(128, 16, 1, 132, 3), (7, 5, 3, 132, 2), (9, 3, 2, 4, 4), (1, 1, 1, 1, 1), (13, 4, 3, 10, 12)],
)
def test_every_tile_is_visited_once(causal, snake, num_m_blocks, heads, batch, num_ctas, hb_chunk):
    num_tiles = num_m_blocks * heads * batch
    seen = [
        tile_coords(t, num_m_blocks, heads, num_tiles, hb_chunk, snake, num_ctas, causal=causal)
        for t in range(num_tiles)
    ]
    assert sorted(seen) == sorted(
        (m, h, b) for m in range(num_m_blocks) for h in range(heads) for b in range(batch)
    )


def _per_cta_work(seqlen, heads, head_dim, schedule, num_ctas=H200_SMS, consumer_wgs=2):
    tile_m, tile_n, num_m_blocks, num_tiles = _shape(seqlen, heads, 1, head_dim, consumer_wgs)
    hb_chunk, snake = causal_schedule(seqlen, head_dim, 1, heads, schedule)
    work = [0] * num_ctas
    for t in range(num_tiles):
        m_block, _, _ = tile_coords(t, num_m_blocks, heads, num_tiles, hb_chunk, snake, num_ctas, causal=True)
        work[t % num_ctas] += math.ceil(min(seqlen, (m_block + 1) * tile_m) / tile_n) + 1
    return max(work) / (sum(work) / num_ctas)


@pytest.mark.parametrize(
    "seqlen, heads, head_dim, consumer_wgs",
    [
        (16384, 16, 128, 2),
        (16384, 8, 256, 2),
        (16384, 32, 64, 2),
        (16384, 32, 64, 3),
        (8192, 16, 128, 2),
        (4096, 40, 128, 2),
    ],
)
def test_lpt_schedule_balances_causal_work(seqlen, heads, head_dim, consumer_wgs):
    assert _per_cta_work(seqlen, heads, head_dim, "lpt", consumer_wgs=consumer_wgs) < 1.03


@pytest.mark.parametrize("head_dim, consumer_wgs", [(128, 3), (256, 3), (64, 4)])
def test_three_consumer_warpgroups_are_built_for_head_dim_64_only(head_dim, consumer_wgs):
    with pytest.raises(ValueError, match=r"head dim 64 only|must be 2 or 3"):
        tile_config(head_dim, consumer_wgs)


def test_sections_schedule_is_the_imbalanced_one_at_16k():
    """The figures the interface's comment quotes: why ``lpt`` became the default."""
    assert _per_cta_work(16384, 16, 128, "sections") > 1.15
    assert _per_cta_work(16384, 8, 256, "sections") > 1.7


def test_causal_schedule_choice(monkeypatch):
    monkeypatch.delenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", raising=False)
    assert causal_schedule(16384, 128, 1, 16) == (16, 1)  # lpt: one section of all 16 heads, snaking
    assert causal_schedule(16384, 128, 1, 16, "sections") == (3, 0)  # sections of 3 heads: 3 x 8 MB of K/V
    monkeypatch.setenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", "sections")
    assert causal_schedule(16384, 128, 1, 16) == (3, 0)
    assert causal_schedule(16384, 128, 1, 16, "lpt") == (16, 1)
    monkeypatch.setenv("ATTN_CUTLASS_CAUSAL_SCHEDULE", "longest")
    with pytest.raises(ValueError, match="ATTN_CUTLASS_CAUSAL_SCHEDULE"):
        causal_schedule(16384, 128, 1, 16)
    assert CAUSAL_SCHEDULES == ("sections", "lpt")
