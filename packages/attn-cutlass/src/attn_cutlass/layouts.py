"""CuTe layout algebra made tangible: every function runs the DSL's own algebra in ``@cute.jit`` host
code (no GPU) and returns what it built as text plus the coordinate -> offset map.

A *layout* is a function from coordinates to offsets, written ``shape:stride``. ``(4,8):(8,1)`` is a
row-major 4 x 8 matrix: coordinate (i, j) goes to ``8 i + j``. Everything the kernels do to tile Q, K, V
and split tiles across threads is built from a handful of operations on such functions:

* ``composition(A, B)``: A o B, "B picks which of A's elements, in which order" (reshapes, transposes).
* ``complement(A, n)``: the layout of the elements of [0, n) that A does not reach (what repeats A).
* ``logical_divide(A, T)`` / ``zipped_divide``: cut A into tiles T; mode 0 inside the tile, mode 1 which tile.
* ``logical_product(A, B)`` / ``blocked_product``: repeat A along B's layout.
* ``Swizzle(B, M, S)``: XOR bits [M+S, M+S+B) of an offset into bits [M, M+B): the shared-memory
  permutation that makes a column of a row-major tile hit different banks.

Each ``demo_*`` returns ``{"layout": str, "offsets": [...]}`` (offsets of ``range(size)`` in the layout's
colexicographic coordinate order), which is what ``tests/test_layouts.py`` pins down.
"""

from __future__ import annotations

import cutlass
import cutlass.cute as cute


def _offsets(layout, out: list) -> None:
    for i in range(cute.size(layout)):
        out.append(int(layout(i)))


@cute.jit
def _basics(res: cutlass.Constexpr):
    row_major = cute.make_layout((4, 8), stride=(8, 1))
    col_major = cute.make_layout((4, 8))  # compact, left-most mode fastest: stride (1, 4)
    res["row_major"] = {"layout": str(row_major), "offsets": [], "at_1_2": int(row_major((1, 2)))}
    _offsets(row_major, res["row_major"]["offsets"])
    res["col_major"] = {"layout": str(col_major), "offsets": []}
    _offsets(col_major, res["col_major"]["offsets"])
    # Hierarchical: a 4 x 8 matrix stored as 2 x 2 blocks of (2 x 4) row-major tiles.
    nested = cute.make_layout(((2, 2), (4, 2)), stride=((4, 16), (1, 8)))
    res["nested"] = {"layout": str(nested), "offsets": [], "at_3_5": int(nested((3, 5)))}
    _offsets(nested, res["nested"]["offsets"])


@cute.jit
def _algebra(res: cutlass.Constexpr):
    a = cute.make_layout((4, 8), stride=(8, 1))
    # Composition with a transposing layout: (8, 4):(4, 1) reads A's elements column by column.
    t = cute.composition(a, cute.make_layout((8, 4), stride=(4, 1)))
    res["composition"] = {"layout": str(t), "offsets": []}
    _offsets(t, res["composition"]["offsets"])
    # Complement: 4:2 reaches {0, 2, 4, 6}; in 16 elements what remains is the "2 x" repeats.
    c = cute.complement(cute.make_layout(4, stride=2), 16)
    res["complement"] = {"layout": str(c), "offsets": []}
    _offsets(c, res["complement"]["offsets"])
    # Divide a column-major 8 x 8 into 2 x 4 tiles.
    m = cute.make_layout((8, 8))
    ld = cute.logical_divide(m, (2, 4))
    zd = cute.zipped_divide(m, (2, 4))
    res["logical_divide"] = {"layout": str(ld), "offsets": []}
    _offsets(ld, res["logical_divide"]["offsets"])
    res["zipped_divide"] = {"layout": str(zd), "offsets": [], "tile_1_first": int(zd((0, 1)))}
    _offsets(zd, res["zipped_divide"]["offsets"])
    # Product: repeat a 2 x 2 block over a 2 x 3 grid.
    block = cute.make_layout((2, 2), stride=(2, 1))
    grid = cute.make_layout((2, 3), stride=(3, 1))
    bp = cute.blocked_product(block, grid)
    res["blocked_product"] = {"layout": str(bp), "offsets": []}
    _offsets(bp, res["blocked_product"]["offsets"])
    lp = cute.logical_product(cute.make_layout(2), cute.make_layout(3))
    res["logical_product"] = {"layout": str(lp), "offsets": []}
    _offsets(lp, res["logical_product"]["offsets"])


@cute.jit
def _swizzle(out: cute.Tensor, res: cutlass.Constexpr):
    # Swizzle<3,3,3> on an 8 x 64 16-bit row-major tile (128 B rows): the 8-element (16 B) chunks of a row
    # are XOR-ed with the row index, so one column's 8 rows land in 8 different 16-byte bank groups. A
    # swizzle is not an affine map, so the offsets are evaluated by the JIT-compiled host code.
    sw = cute.make_swizzle(3, 3, 3)
    tile = cute.make_layout((8, 64), stride=(64, 1))
    composed = cute.make_composed_layout(sw, 0, tile)
    res["layout"] = str(composed)
    for r in cutlass.range(8):
        for c in cutlass.range(64):
            out[r, c] = composed((r, c))


def demo_basics() -> dict:
    res: dict = {}
    _basics(res)
    return res


def demo_algebra() -> dict:
    res: dict = {}
    _algebra(res)
    return res


def demo_swizzle() -> dict:
    """The swizzled 8 x 64 tile: ``offsets[r][c]`` is where element (r, c) lives."""
    import torch
    from cutlass.cute.runtime import from_dlpack

    out = torch.full((8, 64), -1, dtype=torch.int32)
    res: dict = {}
    _swizzle(from_dlpack(out), res)
    res["offsets"] = out.tolist()
    return res


if __name__ == "__main__":  # python -m attn_cutlass.layouts
    import pprint

    for demo in (demo_basics, demo_algebra, demo_swizzle):
        pprint.pprint(demo(), width=110, compact=True)
