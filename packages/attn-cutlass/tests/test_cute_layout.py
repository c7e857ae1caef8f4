"""The CuTe DSL runs its layout algebra on the CPU: traced and JIT-compiled host code, no GPU needed.

The attention kernels will tile Q/K/V with exactly these operations (``make_layout``, ``zipped_divide``,
coordinate -> offset), so this pins down the DSL's conventions the kernels rely on.
"""

import cutlass
import cutlass.cute as cute
import torch
from cutlass.cute.runtime import from_dlpack

ROWS, COLS, TILE = 6, 10, (2, 5)


@cute.jit
def _tiled_offsets(out: cute.Tensor, traced: cutlass.Constexpr):
    # A column-major 6 x 10 layout cut into 2 x 5 tiles: mode 0 is the coordinate inside a tile, mode 1 the
    # tile's coordinate. The offsets are computed by JIT-compiled host code and stored into a CPU tensor.
    layout = cute.make_layout((ROWS, COLS), stride=(1, ROWS))
    tiled = cute.zipped_divide(layout, TILE)
    traced["layout"], traced["tiled"] = str(layout), str(tiled)
    traced["size"], traced["cosize"] = cute.size(layout), cute.cosize(layout)
    for tm in cutlass.range(ROWS // TILE[0]):
        for tn in cutlass.range(COLS // TILE[1]):
            for i in cutlass.range(TILE[0]):
                for j in cutlass.range(TILE[1]):
                    out[tm * TILE[0] + i, tn * TILE[1] + j] = tiled(((i, j), (tm, tn)))


def test_tiled_layout_maps_coordinates_to_column_major_offsets():
    out = torch.full((ROWS, COLS), -1, dtype=torch.int32)
    traced = {}
    _tiled_offsets(from_dlpack(out), traced)

    assert traced["layout"] == "(6,10):(1,6)"
    assert traced["tiled"] == "((2,5),(3,2)):((1,6),(2,30))"
    assert (traced["size"], traced["cosize"]) == (60, 60)
    rows, cols = torch.meshgrid(torch.arange(ROWS), torch.arange(COLS), indexing="ij")
    assert torch.equal(out, (rows + ROWS * cols).to(torch.int32))  # every coordinate, each offset once
