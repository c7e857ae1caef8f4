// Shared device helpers: element types, tensor-core MMA, ldmatrix, cp.async and the shared-memory swizzle.
//
// Every tensor-core kernel in this package is built from the same five primitives, each a single PTX
// instruction wrapped in a small inline function so that the kernels read as algorithms:
//
//   cp_async_16     global -> shared copy of 16 bytes that bypasses registers (sm_80+), zero-filling rows
//                   that lie past the end of the tensor so kernels never read out of bounds;
//   ldmatrix_x4     four 8x8 tiles of 16-bit values from shared memory into the exact register layout
//                   mma.sync expects (the .trans variant transposes on the way);
//   mma_16816       D = A * B + D on a 16x16 (A) by 16x8 (B) tile, fp16 or bf16 inputs, fp32 accumulators;
//   swz             the XOR swizzle that makes those ldmatrix reads bank-conflict free;
//   pack2           two fp32 values rounded into one 32-bit register of two 16-bit values.
//
// Register layouts of mma.sync.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), with
// g = lane / 4 ("group") and t = lane % 4 ("thread in group"):
//   A (16x16, row-major): a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..2t+1]
//                         a2 = A[g][8+2t..]      a3 = A[g+8][8+2t..]
//   B (16x8, "col"):      b0 = B[2t..2t+1][g]    b1 = B[8+2t..8+2t+1][g]
//   C (16x8, fp32):       c0,c1 = C[g][2t..2t+1] c2,c3 = C[g+8][2t..2t+1]
// Note that C of two neighbouring n8 tiles, packed to 16 bits, is exactly A of one k16 step: the
// attention kernels feed P = softmax(S) to the second matmul straight from registers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define ATTN_DEVICE __device__ __forceinline__

// NVRTC has no <cmath>/<limits>: the two infinities as bit patterns.
#define ATTN_INF __int_as_float(0x7f800000)
#define ATTN_NEG_INF __int_as_float(0xff800000)

namespace attn {

// -- element types ------------------------------------------------------------------------------------

ATTN_DEVICE float to_float(float x) { return x; }
ATTN_DEVICE float to_float(__half x) { return __half2float(x); }
ATTN_DEVICE float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> ATTN_DEVICE T from_float(float x);
template <> ATTN_DEVICE float from_float<float>(float x) { return x; }
template <> ATTN_DEVICE __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> ATTN_DEVICE __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Two floats rounded to one register of two 16-bit values (low half = first), as mma operands want them.
template <typename T> ATTN_DEVICE unsigned pack2(float lo, float hi);
template <> ATTN_DEVICE unsigned pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}
template <> ATTN_DEVICE unsigned pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}

// The inverse: one register of two 16-bit values back to two floats (exact).
template <typename T> ATTN_DEVICE float2 unpack2(unsigned x);
template <> ATTN_DEVICE float2 unpack2<__half>(unsigned x) { return __half22float2(*reinterpret_cast<__half2*>(&x)); }
template <> ATTN_DEVICE float2 unpack2<__nv_bfloat16>(unsigned x) {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&x));
}

// -- tensor cores ---------------------------------------------------------------------------------------

// d += a * b on one m16n8k16 tile, fp32 accumulators. One instruction per warp; HMMA.16816 in SASS.
template <typename T> ATTN_DEVICE void mma_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]);

template <> ATTN_DEVICE void mma_16816<__half>(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

template <>
ATTN_DEVICE void mma_16816<__nv_bfloat16>(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Shared-memory address as the 32-bit value PTX's .shared state space uses.
ATTN_DEVICE unsigned smem_addr(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

// threadIdx.x read afresh (volatile: never hoisted or merged with an earlier read). Values derived from
// threadIdx.x in a loop, such as a thread's cp.async offsets, are loop invariant, so ptxas computes them
// once and keeps them live; passing this instead lets it recompute them where registers are short.
ATTN_DEVICE int fresh_tid() {
    int x;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(x));
    return x;
}

// One 32-bit store to a shared-memory address (as smem_addr gives, or swz_step computes).
ATTN_DEVICE void st_shared_u32(unsigned addr, unsigned v) { asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v)); }

// Four 8x8 tiles of 16-bit values. Lanes 8i..8i+7 give the row addresses of tile i; afterwards every
// lane holds, in r[i], two neighbouring values of row lane/4 of tile i (columns 2*(lane%4), +1).
ATTN_DEVICE void ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// The same, transposed: r[i] holds rows 2*(lane%4), +1 of column lane/4 of tile i.
ATTN_DEVICE void ldmatrix_x4_trans(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// -- asynchronous copies --------------------------------------------------------------------------------

// 16 bytes global -> shared without passing through registers. With valid == false the source is not
// read at all (src-size 0) and the destination is filled with zeros: the tile edge costs no branch and a
// zero row is harmless to a matmul (masking takes care of the scores it produces).
ATTN_DEVICE void cp_async_16(unsigned dst, const void* src, bool valid) {
    int src_size = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_size));
}
// The same for 4 bytes (through L1: .cg takes only 16-byte copies), e.g. one fp32 row statistic.
ATTN_DEVICE void cp_async_4(unsigned dst, const void* src, bool valid) {
    int src_size = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_size));
}
ATTN_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Wait until at most N committed groups are still in flight.
template <int N> ATTN_DEVICE void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// -- swizzled shared-memory tiles -----------------------------------------------------------------------

// --8<-- [start:swizzle]
// A tile of ROWS x COLS 16-bit values, COLS a multiple of 64, stored as rows of 16-byte chunks. ldmatrix
// reads the same chunk column of 8 consecutive rows at once; unswizzled those 8 chunks sit at the same
// bank offset (row pitch is a multiple of 128 bytes) and the read is 8-way bank-conflicted. XOR-ing the
// chunk index with (row % 8) spreads the 8 rows over all 32 banks, and cp.async writes go through the
// same mapping, so readers and writers agree without any padding.
template <int COLS> ATTN_DEVICE int swz(int row, int col) {
    static_assert(COLS % 64 == 0, "swizzled rows must hold a multiple of 8 chunks of 8 elements");
    int chunk = (col >> 3) ^ (row & 7);
    return row * COLS + (chunk << 3) + (col & 7);
}
// --8<-- [end:swizzle]

// The same offset for the start of chunk `chunk` when the caller knows s = row & 7. In the fully unrolled
// mma loops every lane's row is (lane & 7) plus a multiple of 8, so s = lane & 7 is one register and
// only the low 3 bits of the chunk index meet the XOR: the compiler folds the rest into immediates
// instead of keeping one precomputed address per (row, chunk) pair alive, which otherwise costs dozens
// of registers and spills.
template <int COLS> ATTN_DEVICE int swz_chunk(int row, int chunk, int s) {
    static_assert(COLS % 64 == 0, "swizzled rows must hold a multiple of 8 chunks of 8 elements");
    return row * COLS + (((chunk & ~7) | ((chunk & 7) ^ s)) << 3);
}

// The same tile addressed from one precomputed lane address. In an unrolled mma loop a lane reads chunk
// c0 + dc of row r0 + dr, where dr is a multiple of 8 (same row % 8, same swizzle) and dc a compile-time
// chunk offset whose low three bits are clear in c0. The swizzle then distributes over the sum: dc's low
// bits XOR into the lane's swizzled chunk, the rest adds. With the tile 128-byte aligned,
//   address(r0 + dr, c0 + dc) = (address(r0, c0) ^ ((dc & 7) << 4)) + (dc >> 3) * 128 + dr * COLS * 2
// is one LOP3 and an immediate offset per ldmatrix; recomputing the swizzle from (row, chunk) instead
// leaves ptxas one live address register per distinct (dr, dc), more than a 255-register kernel holds.
// --8<-- [start:swz-step]
template <int COLS> ATTN_DEVICE unsigned swz_step(unsigned addr, int dr, int dc) {
    static_assert(COLS % 64 == 0, "swizzled rows must hold a multiple of 8 chunks of 8 elements");
    return (addr ^ ((dc & 7) << 4)) + (dc >> 3) * 128 + dr * COLS * 2;
}
// --8<-- [end:swz-step]

// Two other ways to lay out the same tile, kept to measure what the swizzle buys (the matmul's `LAYOUT`
// template argument; every other kernel uses the swizzle):
//   SMEM_PADDED: rows of COLS + 8 elements. Each row starts 16 bytes (4 banks) further round the banks
//                than the one above, so the 8 rows of an ldmatrix read hit 8 different bank groups; the
//                price is 8 unused elements a row (12.5 % more shared memory at 64 columns).
//   SMEM_PLAIN:  rows of COLS, no swizzle: the 8-way conflicted layout the swizzle exists to avoid.
constexpr int SMEM_SWIZZLED = 0, SMEM_PADDED = 1, SMEM_PLAIN = 2;
template <int COLS, int LAYOUT> __host__ __device__ constexpr int smem_pitch() { return LAYOUT == SMEM_PADDED ? COLS + 8 : COLS; }
template <int COLS, int LAYOUT> ATTN_DEVICE int tile_offset(int row, int col) {
    if constexpr (LAYOUT == SMEM_SWIZZLED) return swz<COLS>(row, col);
    return row * smem_pitch<COLS, LAYOUT>() + col;
}
// tile_offset of the start of chunk `chunk` of `row`, s = row & 7 (see swz_chunk).
template <int COLS, int LAYOUT> ATTN_DEVICE int tile_chunk_offset(int row, int chunk, int s) {
    if constexpr (LAYOUT == SMEM_SWIZZLED) return swz_chunk<COLS>(row, chunk, s);
    return row * smem_pitch<COLS, LAYOUT>() + (chunk << 3);
}

// Copy a ROWS x COLS tile (row r of global memory at base + r * row_stride) into shared memory laid out as
// LAYOUT (swizzled unless asked) with NTHREADS threads, 16 bytes per cp.async; rows >= valid_rows and
// chunks of columns >= valid_cols are zero-filled (valid_cols must be a multiple of 8: a chunk is all in
// or all out).
template <int ROWS, int COLS, int NTHREADS, int LAYOUT = SMEM_SWIZZLED, typename T>
ATTN_DEVICE void load_tile_async(T* smem, const T* base, long long row_stride, int valid_rows, int tid,
                                 int valid_cols = COLS) {
    constexpr int CHUNKS_PER_ROW = COLS / 8;
    constexpr int CHUNKS = ROWS * CHUNKS_PER_ROW;
    static_assert(CHUNKS % NTHREADS == 0, "tile chunks must divide evenly among threads");
    if constexpr (NTHREADS % CHUNKS_PER_ROW == 0) {
        // Every pass moves a thread down by the same number of rows and keeps its column: one pointer is
        // advanced by a fixed stride instead of one 64-bit offset per chunk being kept alive in registers,
        // and the swizzle (which depends on row % 8 only) is the same for every pass when that step is a
        // multiple of 8.
        constexpr int ROW_STEP = NTHREADS / CHUNKS_PER_ROW;
        const int row0 = tid / CHUNKS_PER_ROW, col = (tid % CHUNKS_PER_ROW) * 8;
        const bool col_ok = col < valid_cols;
        const T* src = base + row0 * row_stride + col;
        const long long step = ROW_STEP * row_stride;
#pragma unroll
        for (int i = 0; i < CHUNKS / NTHREADS; ++i) {
            const int row = row0 + i * ROW_STEP;
            const bool valid = row < valid_rows && col_ok;
            cp_async_16(smem_addr(smem + tile_offset<COLS, LAYOUT>(row, col)), valid ? src : base, valid);
            src += step;
        }
    } else {
#pragma unroll
        for (int i = 0; i < CHUNKS / NTHREADS; ++i) {
            int c = tid + i * NTHREADS;
            int row = c / CHUNKS_PER_ROW, col = (c % CHUNKS_PER_ROW) * 8;
            bool valid = row < valid_rows && col < valid_cols;
            const T* src = base + (valid ? row * row_stride + col : 0);
            cp_async_16(smem_addr(smem + tile_offset<COLS, LAYOUT>(row, col)), src, valid);
        }
    }
}

// -- warp reductions ------------------------------------------------------------------------------------

// Max / sum over the 4 lanes of a quad (the lanes that share one row of an mma accumulator).
ATTN_DEVICE float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
}
ATTN_DEVICE float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffff, x, 1);
    return x + __shfl_xor_sync(0xffffffff, x, 2);
}
ATTN_DEVICE float warp_sum(float x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffff, x, off);
    return x;
}
ATTN_DEVICE float warp_max(float x) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, off));
    return x;
}

// -- softmax ------------------------------------------------------------------------------------------

// 2^x by the SFU's approximate exp2 (MUFU.EX2, flush-to-zero): the softmax's one transcendental per score.
ATTN_DEVICE float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

}  // namespace attn
