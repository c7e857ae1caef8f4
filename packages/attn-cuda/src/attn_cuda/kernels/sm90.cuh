// Hopper (sm_90a) building blocks in inline PTX, for flash_fwd_sm90.cu: mbarriers, TMA tile loads, warpgroup
// register reallocation, and wgmma with its shared-memory matrix descriptors.
//
// wgmma's operands in shared memory are described by a 64-bit descriptor (PTX ISA, "matrix descriptor"):
// bits 0-13 the start address, 16-29 the leading-dimension byte offset, 32-45 the stride-dimension byte
// offset (all three in 16-byte units), 62-63 the swizzle (1: 128 bytes). Every tile here is stored the way
// a TMA load with 128-byte swizzle writes it: rows of 64 16-bit elements (128 bytes), the 16-byte chunk c of
// row r at chunk c ^ (r % 8), tiles 1024-byte aligned so that the pattern sits on the address bits both
// the TMA unit and wgmma swizzle by. Two ways to read such a tile:
//
// * K-major (the reduction dimension contiguous: Q and K for S = Q K^T): 8-row groups 1024 bytes apart
//   (the stride offset); one 16-element k step is 32 bytes further along the row (the leading offset is
//   unused with swizzling, 16 bytes by convention). A head dim of 128 is two 64-element column blocks.
// * MN-major (the output dimension contiguous: V, whose rows are keys, for O = P V): 64-element blocks of
//   the head dim a column block apart (the leading offset), 8-key groups 1024 bytes apart (the stride
//   offset); one 16-key k step is 16 rows (2048 bytes) further; the instruction's transpose-B flag is set.
#pragma once

#include "common.cuh"

namespace attn {
namespace sm90 {

ATTN_DEVICE unsigned smem_addr(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

// ---- mbarriers (64-bit, in shared memory; addresses are shared-window offsets) --------------------------
ATTN_DEVICE void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// Make the initialised barriers visible to the TMA unit (the async proxy) before anyone uses them.
ATTN_DEVICE void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
// Arrive once and announce `bytes` more to come from TMA: the phase completes when both have happened.
ATTN_DEVICE void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
ATTN_DEVICE void mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
// Wait until the phase of parity `parity` has completed (a fresh barrier is in phase 0).
ATTN_DEVICE void mbar_wait(unsigned bar, unsigned parity) {
    unsigned done = 0;
    while (!done) {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    }
}

// ---- TMA ------------------------------------------------------------------------------------------------
// The tensor maps live in global memory (written by a host copy before the launch): order that write
// before the TMA unit reads them.
ATTN_DEVICE void tensormap_acquire(const void* map) {
    asm volatile("fence.proxy.tensormap::generic.acquire.gpu [%0], 128;" ::"l"(map) : "memory");
}
// One box of a 4-D tensor map (coordinates innermost first) into shared memory; completes on `bar`.
ATTN_DEVICE void tma_load_4d(unsigned dst, const void* map, unsigned bar, int c0, int c1, int c2, int c3) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%3, %4, %5, %6}], [%2];"
        ::"r"(dst), "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
        : "memory");
}

// ---- named barriers (0 is __syncthreads): `threads` arrive in all, a multiple of 32 ------------------------
template <int THREADS> ATTN_DEVICE void barrier_sync(int id) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "n"(THREADS) : "memory");
}
template <int THREADS> ATTN_DEVICE void barrier_arrive(int id) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "n"(THREADS) : "memory");
}

// ---- warpgroup register reallocation (every thread of the warpgroup executes it) ------------------------
template <int N> ATTN_DEVICE void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N)); }
template <int N> ATTN_DEVICE void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N)); }

// ---- wgmma ----------------------------------------------------------------------------------------------
// fence: registers written by ordinary instructions (accumulators, A fragments) are ready for wgmma.
ATTN_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
ATTN_DEVICE void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> ATTN_DEVICE void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

// Pin registers to this point of the instruction stream (an empty asm that "changes" them): the compiler
// sees no dependence of wgmma's registers on the fence and the wait, and would otherwise move the math
// that writes or reads them across those (ptxas then fences the in-flight wgmma itself, warning C7519).
template <int N> ATTN_DEVICE void pin(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N, int M> ATTN_DEVICE void pin(unsigned (&r)[N][M]) {
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int j = 0; j < M; ++j) asm volatile("" : "+r"(r[i][j])::"memory");
}

// A 128-byte-swizzled operand: start address and the two offsets in bytes (see the top of this file).
ATTN_DEVICE unsigned long long smem_desc(unsigned addr, unsigned leading_bytes, unsigned stride_bytes) {
    return static_cast<unsigned long long>((addr & 0x3FFFF) >> 4) |
           (static_cast<unsigned long long>(leading_bytes >> 4) << 16) |
           (static_cast<unsigned long long>(stride_bytes >> 4) << 32) | (1ull << 62);
}

// D (64 x N, fp32, N / 2 registers a thread in the accumulator layout) += A B^T, A (64 x 16) and B (N x 16)
// both K-major in shared memory; `accumulate` 0 overwrites D.
template <typename T, int N>
ATTN_DEVICE void wgmma_ss(float (&d)[N / 2], unsigned long long desc_a, unsigned long long desc_b, int accumulate);
// D (64 x N) += A B, A (64 x 16) from registers (four 32-bit pairs in the accumulator layout of a 64 x 16
// tile: rows g / g + 8, keys 2t.. and 8 + 2t..), B (16 x N) MN-major in shared memory.
template <typename T, int N>
ATTN_DEVICE void wgmma_rs_mn(float (&d)[N / 2], const unsigned (&a)[4], unsigned long long desc_b);

// The accumulator operands of a 64 x 64 and a 64 x 128 fp32 tile (32 and 64 registers a thread): their
// names in the instruction string, and the registers bound to them, in order.
#define ATTN_ACC32_NAMES \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define ATTN_ACC64_NAMES \
    ATTN_ACC32_NAMES ", " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define ATTN_ACC32_REGS(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define ATTN_ACC64_REGS(d) \
    ATTN_ACC32_REGS(d), \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// S = Q K^T: D (64 x 128) += A B^T, both operands K-major in shared memory.
#define ATTN_WGMMA_SS_N128(TYPE, PTX_TYPE) \
    template <> \
    ATTN_DEVICE void wgmma_ss<TYPE, 128>(float(&d)[64], unsigned long long desc_a, unsigned long long desc_b, \
                                         int accumulate) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX_TYPE "." PTX_TYPE " {" ATTN_ACC64_NAMES \
                     "}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
                     : ATTN_ACC64_REGS(d) \
                     : "l"(desc_a), "l"(desc_b), "r"(accumulate)); \
    }

// O += P V: D (64 x N) += A B, A from registers, B MN-major in shared memory (transpose-B). A_AND_B and PRED
// name the operands after the accumulators: the four A registers and B's descriptor, then the accumulate flag.
#define ATTN_WGMMA_RS_MN(TYPE, PTX_TYPE, N, NAMES, REGS, A_AND_B, PRED) \
    template <> \
    ATTN_DEVICE void wgmma_rs_mn<TYPE, N>(float(&d)[N / 2], const unsigned(&a)[4], unsigned long long desc_b) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n" \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX_TYPE "." PTX_TYPE " {" NAMES "}, " A_AND_B \
                     ", p, 1, 1, 1;\n}\n" \
                     : REGS(d) \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1)); \
    }

// The operand lists are the same for both 16-bit types; only the PTX type differs.
ATTN_WGMMA_SS_N128(__half, "f16")
ATTN_WGMMA_SS_N128(__nv_bfloat16, "bf16")
ATTN_WGMMA_RS_MN(__half, "f16", 128, ATTN_ACC64_NAMES, ATTN_ACC64_REGS, "{%64, %65, %66, %67}, %68", "%69")
ATTN_WGMMA_RS_MN(__nv_bfloat16, "bf16", 128, ATTN_ACC64_NAMES, ATTN_ACC64_REGS, "{%64, %65, %66, %67}, %68", "%69")
ATTN_WGMMA_RS_MN(__half, "f16", 64, ATTN_ACC32_NAMES, ATTN_ACC32_REGS, "{%32, %33, %34, %35}, %36", "%37")
ATTN_WGMMA_RS_MN(__nv_bfloat16, "bf16", 64, ATTN_ACC32_NAMES, ATTN_ACC32_REGS, "{%32, %33, %34, %35}, %36", "%37")
#undef ATTN_WGMMA_SS_N128
#undef ATTN_WGMMA_RS_MN
#undef ATTN_ACC64_REGS
#undef ATTN_ACC32_REGS
#undef ATTN_ACC64_NAMES
#undef ATTN_ACC32_NAMES

}  // namespace sm90
}  // namespace attn
