"""The swizzle arithmetic the tiled backward relies on, modelled in Python (CPU tier, no GPU).

``flash_bwd_tiled.cu`` computes one lane address per operand and reaches every other element it reads or
writes with ``attn::swz_step``: XOR the chunk offset's low three bits into the address, add the rest. That
equals the element's swizzled address only when the offset's low chunk bits are clear in the lane's own
chunk index. The kernel's static_asserts state the condition (warp-tile widths powers of 2); this test
checks the arithmetic itself, for every lane and warp of each tiling the package launches, with the
operands addressed exactly as the kernel addresses them.
"""

from __future__ import annotations

import pytest

from attn_cuda import flash


def swizzled(cols: int, row: int, col: int) -> int:
    """Byte offset of element (row, col) of a tile of 16-bit values, rows of ``cols``: common.cuh's swz."""
    chunk = (col >> 3) ^ (row & 7)
    return 2 * (row * cols + (chunk << 3) + (col & 7))


def swz_step(cols: int, addr: int, dr: int, dc: int) -> int:
    """common.cuh's swz_step: the address dr rows and dc chunks on from ``addr``."""
    return (addr ^ ((dc & 7) << 4)) + (dc >> 3) * 128 + dr * cols * 2


def operands(cfg: flash.TiledBwdConfig):
    """(name, cols, lane -> (row0, col0) for one warp, row steps, chunk steps) for every swz_step base of
    the kernel, per warp, mirroring flash_bwd_tiled.cu."""
    hd, bm, bn, warps = cfg.head_dim, cfg.block_m, cfg.block_n, cfg.warps
    s_m, s_n = bm // cfg.wm_s, bn // (warps // cfg.wm_s)
    kv_m, kv_n = bn // cfg.wn_kv, hd // (warps // cfg.wn_kv)
    q_m, q_n = bm // cfg.wm_q, hd // (warps // cfg.wm_q)
    for warp in range(warps):
        s_m0, s_n0 = (warp % cfg.wm_s) * s_m, (warp // cfg.wm_s) * s_n
        kv_m0, kv_n0 = (warp % cfg.wn_kv) * kv_m, (warp // cfg.wn_kv) * kv_n
        q_m0, q_n0 = (warp % cfg.wm_q) * q_m, (warp // cfg.wm_q) * q_n

        def a_plain(r0):  # ldmatrix of an A operand stored [m][k]: rows 0-15, chunk 0 or 1
            return lambda lane: (r0 + (lane & 15), 8 * (lane >> 4))

        def b_pairs(n0):  # ldmatrix of two B operands stored [k][n]: rows 0-15, columns n0 and n0 + 8
            return lambda lane: ((lane & 7) + 8 * ((lane >> 3) & 1), n0 + 8 * ((lane >> 3) >> 1))

        yield ("S: Q, dO", hd, a_plain(s_m0), range(0, s_m, 16), range(0, hd // 8, 2))
        yield (
            "S: K, V",
            hd,
            lambda lane, n0=s_n0: (n0 + (lane & 7) + 8 * ((lane >> 3) >> 1), 8 * ((lane >> 3) & 1)),
            range(0, s_n, 16),
            range(0, hd // 8, 2),
        )
        # P and dS stores: (row g, column 2t) of the warp's tile, then 8-row and 8-column steps.
        yield (
            "P, dS stores",
            bn,
            lambda lane, m0=s_m0, n0=s_n0: (m0 + (lane >> 2), n0 + 2 * (lane & 3)),
            range(0, s_m, 8),
            range(0, s_n // 8),
        )
        yield (
            "dK/dV: P^T, dS^T",
            bn,
            lambda lane, m0=kv_m0: ((lane & 7) + 8 * ((lane >> 3) >> 1), m0 + 8 * ((lane >> 3) & 1)),
            range(0, bm, 16),
            range(0, kv_m // 8, 2),
        )
        yield ("dK/dV: dO, Q", hd, b_pairs(kv_n0), range(0, bm, 16), range(0, kv_n // 8, 2))
        yield ("dQ: dS", bn, a_plain(q_m0), range(0, q_m, 16), range(0, bn // 8, 2))
        yield ("dQ: K", hd, b_pairs(q_n0), range(0, bn, 16), range(0, q_n // 8, 2))


def mismatches(cfg: flash.TiledBwdConfig) -> list[str]:
    bad = []
    for name, cols, lane_at, rows, chunks in operands(cfg):
        for lane in range(32):
            r0, c0 = lane_at(lane)
            base = swizzled(cols, r0, c0)
            for dr in rows:
                for dc in chunks:
                    want = swizzled(cols, r0 + dr, c0 + 8 * dc)
                    if swz_step(cols, base, dr, dc) != want:
                        bad.append(f"{name}: lane {lane}, +{dr} rows, +{dc} chunks")
    return bad


@pytest.mark.parametrize(
    "cfg",
    sorted(
        {
            c
            for configs in flash.BWD_VARIANTS.values()
            for c in configs.values()
            if isinstance(c, flash.TiledBwdConfig)
        },
        key=repr,
    ),
    ids=repr,
)
def test_swz_step_reaches_the_swizzled_address_of_every_operand(cfg):
    assert mismatches(cfg) == []


def test_a_warp_tile_width_that_is_not_a_power_of_two_breaks_it():
    """What the kernel's static_assert refuses: 48-channel dK/dV tiles (a warp's first chunk 6, 12, ...)."""
    odd = flash.TiledBwdConfig(96, block_m=64, wn_kv=4)  # dK/dV tiles of 32 keys x 48 channels
    assert any(m.startswith("dK/dV: dO, Q") for m in mismatches(odd))
