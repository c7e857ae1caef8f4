"""What the copy kernels share: the tile one CTA copies and the tiled copy over it (see attn_cutlass.copies)."""

from __future__ import annotations

import cutlass.cute as cute

TILE = (64, 64)  # (rows, columns) of the tile one CTA copies
THREADS = 128


def tiled_copy(op, dtype, bits: int, tile=TILE, threads: int = THREADS, thread_major: str = "row"):
    """The tiled copy of ``op``: ``bits // width`` contiguous values of one row per copy, threads laid
    over the tile row-major (consecutive threads take consecutive vectors of a row: coalesced) or, with
    ``thread_major="col"``, column-major (consecutive threads take the same vector of consecutive rows)."""
    vals = bits // dtype.width
    per_row = tile[1] // vals
    rows = threads // per_row
    assert per_row * vals == tile[1] and rows * per_row == threads and tile[0] % rows == 0, (tile, bits)
    stride = (per_row, 1) if thread_major == "row" else (1, rows)
    atom = cute.make_copy_atom(op, dtype, num_bits_per_copy=bits)
    return cute.make_tiled_copy_tv(
        atom, cute.make_layout((rows, per_row), stride=stride), cute.make_layout((1, vals))
    )


def tile_grid(mX: cute.Tensor, tile=TILE) -> tuple:
    """One CTA per tile of an (M, N) tensor whose sizes are multiples of the tile."""
    return (cute.size(mX, mode=[0]) // tile[0], cute.size(mX, mode=[1]) // tile[1], 1)
