"""Pieces shared by the attention kernels: accumulator views, masking, the online softmax and the
register store of the output.

Both tensor-core generations hand each thread an accumulator *fragment*. Its layout is the MMA's, not a
matrix's, so the softmax first looks at it through a ``(rows, cols)`` view:

* sm80 ``mma.sync m16n8k16``: per thread ``((2, 2), MMA_M, MMA_N)``; value ``(i, j)`` is column pair
  element ``i`` and row half ``j`` (rows ``g`` and ``g + 8`` of the 16-row atom).
* sm90 ``wgmma m64nNk16``: per thread ``((2, 2, N / 8), MMA_M, MMA_N)``; the third value mode walks the
  8-column groups of the N-wide atom.

In both, the four threads of a quad (``lane % 4``) share a row, so a row reduction is a per-thread loop
followed by two butterfly shuffles.
"""

from __future__ import annotations

import math

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op

LOG2_E = math.log2(math.e)
LN_2 = math.log(2.0)
#: Lazy rescaling: how far (log2 units) a block's row max may exceed the running max before the running
#: max, and with it the output, is updated. Probabilities then reach at most 2^8, well inside fp16/bf16
#: range, with the same relative rounding as below 1.
RESCALE_SLACK = 8.0


def rowcol_layout(acc_layout: cute.Layout) -> cute.Layout:
    """View an MMA accumulator layout as ``(rows, cols)`` (static: works on the layout, not values)."""
    s, d = acc_layout.shape, acc_layout.stride
    if len(s[0]) == 3:  # sm90: ((2, 2, V), M, N)
        return cute.make_layout(
            ((s[0][1], s[1]), (s[0][0], s[0][2], s[2])),
            stride=((d[0][1], d[1]), (d[0][0], d[0][2], d[2])),
        )
    # sm80: ((2, 2), M, N)
    return cute.make_layout(((s[0][1], s[1]), (s[0][0], s[2])), stride=((d[0][1], d[1]), (d[0][0], d[2])))


def acc_as_operand_a_layout(acc_layout: cute.Layout) -> cute.Layout:
    """Reinterpret a 16-bit copy of an accumulator as the A operand of the next MMA (P in O += P V).

    The C fragment of ``S = Q K^T`` and the A fragment of ``O += P V`` put the same (row, col) in the same
    thread: only the grouping differs. A's value mode is ``(2, 2, 2)``: column pair, row half, and which
    8-column half of the 16-wide k block; the k blocks are pairs of C's 8-column groups. So: split C's
    column-group mode by 2 and move the inner 2 into the value mode.
    """
    s, d = acc_layout.shape, acc_layout.stride
    if len(s[0]) == 3:  # sm90: ((2, 2, V), M, 1) -> ((2, 2, 2), M, V / 2)
        return cute.make_layout(
            ((s[0][0], s[0][1], 2), s[1], s[0][2] // 2),
            stride=((d[0][0], d[0][1], d[0][2]), d[1], 2 * d[0][2]),
        )
    # sm80: ((2, 2), M, N) -> ((2, 2, 2), M, N / 2)
    return cute.make_layout(
        ((s[0][0], s[0][1], 2), s[1], s[2] // 2),
        stride=((d[0][0], d[0][1], d[2]), d[1], 2 * d[2]),
    )


@cute.jit
def quad_allreduce_max(x: Float32) -> Float32:
    # The 4 threads of a quad own one row: xor-shuffles by 2 and 1 give every one of them the result.
    x = cute.arch.fmax(x, cute.arch.shuffle_sync_bfly(x, offset=2))
    return cute.arch.fmax(x, cute.arch.shuffle_sync_bfly(x, offset=1))


@cute.jit
def quad_allreduce_sum(x: Float32) -> Float32:
    x = x + cute.arch.shuffle_sync_bfly(x, offset=2)
    return x + cute.arch.shuffle_sync_bfly(x, offset=1)


@cute.jit
def apply_mask(
    s_rc: cute.Tensor,
    c_rc: cute.Tensor,
    row0: Int32,
    col0: Int32,
    seqlen_q: Int32,
    seqlen_k: Int32,
    window_left: Int32,
    window_right: Int32,
    has_left: cutlass.Constexpr,
    has_right: cutlass.Constexpr,
):
    """Set scores of keys a query may not see to -inf (flash-attn's bottom-right aligned convention).

    Query ``i`` sees key ``j`` iff ``j < seqlen_k`` and
    ``i + seqlen_k - seqlen_q - left <= j <= i + seqlen_k - seqlen_q + right`` (bounds that are on).
    ``c_rc`` holds the (row, col) coordinate of every accumulator element inside the tile.
    """
    shift = seqlen_k - seqlen_q
    for r in cutlass.range_constexpr(cute.size(s_rc, mode=[0])):
        row = row0 + c_rc[r, 0][0]
        hi = seqlen_k
        if cutlass.const_expr(has_right):
            hi = cutlass.min(hi, row + shift + window_right + 1)
        lo = Int32(0)
        if cutlass.const_expr(has_left):
            lo = row + shift - window_left
        for c in cutlass.range_constexpr(cute.size(s_rc, mode=[1])):
            col = col0 + c_rc[0, c][1]
            if col >= hi or col < lo:
                s_rc[r, c] = -Float32.inf


@cute.jit
def apply_softcap(s: cute.Tensor, pre_scale: Float32, softcap: Float32):
    """``softcap * tanh(scale * s / softcap)``; the softmax then uses a scale of 1 on the capped scores."""
    for i in cutlass.range_constexpr(cute.size(s)):
        s[i] = softcap * cute.math.tanh(s[i] * pre_scale, fastmath=True)


@cute.jit
def online_softmax_step(
    s_rc: cute.Tensor,
    row_max: cute.Tensor,
    row_sum: cute.Tensor,
    correction: cute.Tensor,
    scale_log2: Float32,
):
    """One block of the online softmax, in place: ``s_rc`` becomes ``exp2((s - m_new) * scale_log2)``.

    ``correction[r] = exp2((m_old - m_new) * scale_log2)`` is what the running output and sum must be
    multiplied by. ``row_sum`` stays a per-thread partial sum (the quad reduction happens once, at the
    end). A row that has seen only -inf keeps max -inf; it is exponentiated against 0 so it stays 0
    instead of becoming NaN.
    """
    for r in cutlass.range_constexpr(cute.size(s_rc, mode=[0])):
        m = _row_max(s_rc, r, row_max[r])
        _update_row(s_rc, r, row_max, row_sum, correction, m, scale_log2)


@cute.jit
def _row_max(s_rc: cute.Tensor, r: cutlass.Constexpr, m: Float32) -> Float32:
    """max(m, row r of the block), over the whole row (its quad)."""
    for c in cutlass.range_constexpr(cute.size(s_rc, mode=[1])):
        m = cute.arch.fmax(m, s_rc[r, c])
    return quad_allreduce_max(m)


@cute.jit
def _update_row(
    s_rc: cute.Tensor,
    r: cutlass.Constexpr,
    row_max: cute.Tensor,
    row_sum: cute.Tensor,
    correction: cute.Tensor,
    m_use: Float32,
    scale_log2: Float32,
):
    """Row r against the max ``m_use`` (>= the running one): its correction, probabilities and sum.

    The correction is ``exp2((m_old - m_use) * scale)``: exactly 1 when the max is kept. Written as
    ``m_old * scale - m_use * scale`` it became one FFMA whose rounding left it 1 +- ulp, a bias in the row
    sum that grows with the number of blocks (and is never undone where lazy rescaling skips O)."""
    m_safe = m_use
    if m_use == -Float32.inf:
        m_safe = Float32(0.0)
    m_scaled = m_safe * scale_log2
    correction[r] = cute.math.exp2((row_max[r] - m_safe) * scale_log2, fastmath=True)
    row_max[r] = m_use
    total = Float32(0.0)
    for c in cutlass.range_constexpr(cute.size(s_rc, mode=[1])):
        p = cute.math.exp2(s_rc[r, c] * scale_log2 - m_scaled, fastmath=True)
        s_rc[r, c] = p
        total += p
    row_sum[r] = row_sum[r] * correction[r] + total


@cute.jit
def online_softmax_step_lazy(
    s_rc: cute.Tensor,
    row_max: cute.Tensor,
    row_sum: cute.Tensor,
    correction: cute.Tensor,
    moved: cute.Tensor,
    scale_log2: Float32,
    slack: Float32,
):
    """:func:`online_softmax_step`, except that a row keeps its running max until a block's max exceeds it
    by more than ``slack`` (log2 units of scaled scores); its correction is then exactly 1.

    Any max gives the same softmax (it cancels between the output and the row sum, and the logsumexp adds
    back the one used), so only the range of ``p`` changes: at most ``2^slack``. ``moved[0]`` becomes 1 if
    one of this thread's rows took a new max, else 0; :func:`rescale_rows_if_moved` reads it.
    """
    grew = Int32(0)
    for r in cutlass.range_constexpr(cute.size(s_rc, mode=[0])):
        m_old = row_max[r]
        m = _row_max(s_rc, r, m_old)
        # The difference, not m_old + slack (which rounds by up to 8 itself once |m| >= 2^27): a row's
        # first visible key gives +inf and sets its max; a row that saw nothing yet gives NaN, no growth.
        m_use = m_old
        if (m - m_old) * scale_log2 > slack:
            m_use = m
            grew = Int32(1)
        _update_row(s_rc, r, row_max, row_sum, correction, m_use, scale_log2)
    moved[0] = grew


@cute.jit
def rescale_rows_if_moved(o_rc: cute.Tensor, factor: cute.Tensor, moved: cute.Tensor):
    """:func:`rescale_rows` unless no row of this warp took a new max (every factor is then 1): one warp
    vote keeps the branch uniform, so the warp either multiplies or skips as a whole."""
    if cute.arch.vote_any_sync(moved[0] != 0):
        rescale_rows(o_rc, factor)


@cute.jit
def rescale_rows(o_rc: cute.Tensor, factor: cute.Tensor):
    for r in cutlass.range_constexpr(cute.size(o_rc, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(o_rc, mode=[1])):
            o_rc[r, c] = o_rc[r, c] * factor[r]


@cute.jit
def finalize(
    o_rc: cute.Tensor, row_max: cute.Tensor, row_sum: cute.Tensor, lse: cute.Tensor, scale_log2: Float32
):
    """Divide the output by the row sums. Rows that saw no key get out 0 and lse +inf (flash-attn's rule)."""
    for r in cutlass.range_constexpr(cute.size(o_rc, mode=[0])):
        total = quad_allreduce_sum(row_sum[r])
        inv = Float32(0.0)
        lse[r] = Float32.inf
        if total > Float32(0.0):
            inv = cute.arch.rcp_approx(total)
            lse[r] = (row_max[r] * scale_log2 + cute.math.log2(total, fastmath=True)) * LN_2
        for c in cutlass.range_constexpr(cute.size(o_rc, mode=[1])):
            o_rc[r, c] = o_rc[r, c] * inv


@cute.jit
def store_rows(acc: cute.Tensor, tOgO: cute.Tensor, tOcO: cute.Tensor, row0: Int32, seqlen_q: Int32, dtype):
    """Registers -> global memory, one value at a time: ``acc`` converted to ``dtype`` into ``tOgO`` (this
    thread's slice of the output tile), skipping the rows at or past ``seqlen_q`` (``tOcO``: each value's
    (row, col) in the tile, whose first row is ``row0``)."""
    rO = cute.make_rmem_tensor_like(acc, dtype)
    rO.store(acc.load().to(dtype))
    for i in cutlass.range_constexpr(cute.size(rO)):
        if row0 + tOcO[i][0] < seqlen_q:
            tOgO[i] = rO[i]


@dsl_user_op
def _pack_f32x2(lo: Float32, hi: Float32, to_bf16: cutlass.Constexpr, *, loc=None, ip=None) -> Int32:
    """``cvt.rn.{bf16x2,f16x2}.f32``: two fp32 values as one 32-bit register of two 16-bit ones (``lo`` in
    the low half). Inline PTX on purpose, see :func:`convert_pinned`."""
    kind = "bf16x2" if to_bf16 else "f16x2"
    return Int32(
        llvm.inline_asm(
            T.i32(),
            [Float32(lo).ir_value(loc=loc, ip=ip), Float32(hi).ir_value(loc=loc, ip=ip)],
            f"cvt.rn.{kind}.f32 $0, $2, $1;",  # PTX takes the high half first
            "=r,f,f",
            has_side_effects=False,
            loc=loc,
            ip=ip,
        )
    )


@cute.jit
def convert_pinned(src: cute.Tensor, dst: cute.Tensor):
    """``dst.store(src.load().to(dst.element_type))`` for fp32 -> fp16/bf16 register tensors, as inline PTX.

    Why not ``.to()``: where P is loop-carried (written at the end of one key block, read by the next block's
    P V wgmma), LLVM folds the phi of the two conversions into one conversion after the phi, so the loop
    carries the 32-bit scores instead of the 16-bit P: twice the registers. At 64 x 128 blocks with 160
    registers a thread that is what made ptxas spill O and serialise every wgmma (C7512). LLVM cannot look
    into inline assembly, so the conversion stays where it is written."""
    # both in storage order: pairs of neighbouring registers, whatever the (identical) layouts say
    n = cute.cosize(src.layout)
    flat = cute.make_tensor(src.iterator, cute.make_layout(n))
    out = cute.recast_tensor(cute.make_tensor(dst.iterator, cute.make_layout(n)), Int32)
    for i in cutlass.range_constexpr(n // 2):
        out[i] = _pack_f32x2(flat[2 * i], flat[2 * i + 1], dst.element_type is cutlass.BFloat16)
