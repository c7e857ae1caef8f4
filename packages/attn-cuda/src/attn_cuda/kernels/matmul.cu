// Matrix multiply C = A @ B in four steps, each removing the bottleneck of the one before.
// A is M x K, B is K x N, C is M x N, all row-major and contiguous; accumulation is always fp32.
//
//   1 naive             one thread per C element, K multiply-adds reading A and B from global memory:
//                       every input is read M or N times from DRAM/L2. Bound by memory traffic.
//   2 tiled             a block stages TILE x TILE tiles of A and B in shared memory and every thread
//                       reuses them TILE times: global traffic falls by TILE. Now bound by shared-memory
//                       loads (two loads per multiply-add).
//   3 register-blocked  each thread computes an 8 x 8 block of C from 8 values of A and 8 of B held in
//                       registers: 16 shared loads feed 64 multiply-adds. Now bound by the FMA units.
//   4 tensor cores      mma.sync.m16n8k16 does 2048 multiply-adds per warp instruction; ldmatrix feeds it
//                       from swizzled shared memory and cp.async keeps a 3-stage pipeline of tiles in
//                       flight so the loads of tile k+2 hide behind the math of tile k. Now most likely
//                       bound by shared-memory traffic per mma: a 128 x 256 block tile of 64 x 64 warp tiles
//                       (tile="128x256") moves a third fewer bytes per mma than the 128 x 128 default.
#include "common.cuh"

using attn::from_float;
using attn::to_float;

// -- 1. naive -------------------------------------------------------------------------------------------
template <typename T>
__global__ void matmul_naive(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, int M, int N, int K) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;  // x indexes columns: a warp reads a row of B coalesced
    int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= M || col >= N) return;
    float acc = 0.f;
    for (int k = 0; k < K; ++k) acc += to_float(A[(long long)row * K + k]) * to_float(B[(long long)k * N + col]);
    C[(long long)row * N + col] = from_float<T>(acc);
}

// -- 2. shared-memory tiled -----------------------------------------------------------------------------
template <typename T, int TILE>
__global__ void __launch_bounds__(TILE * TILE) matmul_tiled(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                                                           int M, int N, int K) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE + 1];  // +1: column reads of Bs would otherwise all hit one bank
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        // Every thread loads one element of each tile; zeros past the edges keep the inner loop branch-free.
        As[ty][tx] = (row < M && k0 + tx < K) ? to_float(A[(long long)row * K + k0 + tx]) : 0.f;
        Bs[ty][tx] = (k0 + ty < K && col < N) ? to_float(B[(long long)(k0 + ty) * N + col]) : 0.f;
        __syncthreads();  // the tile is complete before anyone reads it
#pragma unroll
        for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();  // and everyone is done with it before the next tile overwrites it
    }
    if (row < M && col < N) C[(long long)row * N + col] = from_float<T>(acc);
}

// -- 3. register-blocked --------------------------------------------------------------------------------
// 128 x 128 block tile, K in steps of 8, 256 threads each owning 8 x 8 outputs at rows ty + 16 i and
// columns tx + 16 j (strided, so a warp's shared reads are broadcasts or consecutive: no bank conflicts).
template <typename T>
__global__ void __launch_bounds__(256) matmul_regblock(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                                                       int M, int N, int K) {
    constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
    __shared__ float As[BK][BM];  // A stored transposed: the 8 values a thread needs for one k are a column
    __shared__ float Bs[BK][BN];
    int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[TM][TN] = {};
    float a[TM], b[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
        for (int i = 0; i < (BM * BK) / 256; ++i) {  // 4 elements of each tile per thread
            int e = tid + i * 256;
            int am = e / BK, ak = e % BK;  // A tile: 128 rows of 8
            int gm = m0 + am, gk = k0 + ak;
            As[ak][am] = (gm < M && gk < K) ? to_float(A[(long long)gm * K + gk]) : 0.f;
            int bk = e / BN, bn = e % BN;  // B tile: 8 rows of 128
            int gk2 = k0 + bk, gn = n0 + bn;
            Bs[bk][bn] = (gk2 < K && gn < N) ? to_float(B[(long long)gk2 * N + gn]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];  // the outer product: 64 FMAs per 16 loads
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int gm = m0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int gn = n0 + tx + 16 * j;
            if (gm < M && gn < N) C[(long long)gm * N + gn] = from_float<T>(acc[i][j]);
        }
    }
}

// -- 4. tensor cores ------------------------------------------------------------------------------------
// One kernel, templated over its tiling: BM x BN block tile of C, K in steps of BK, STAGES tiles of A and
// B in flight, warps of WM x WN laid out (BM / WM) x (BN / WN). Instantiated as
//
//   128 x 128, BK 64, 3 stages, 8 warps of 64 x 32 (96 KB)   the first version and the default;
//   128 x 256, BK 64, 3 stages, 8 warps of 64 x 64 (144 KB)  twice the work per warp and per block.
//
// Per k16 step a warp loads WM / 16 A fragments (one ldmatrix.x4 each) and WN / 8 B fragments (one
// ldmatrix.x4.trans per pair) and issues (WM / 16) * (WN / 8) mma: a 64 x 32 warp 16 mma for 6 ldmatrix,
// a 64 x 64 warp 32 mma for 8.
//
// Why wider: with mma.sync the likely limit is shared memory, not the tensor cores: it moves 128 bytes per
// clock per SM, cp.async writes and ldmatrix reads together. Per k16 step the 128 x 128 block reads 24 KB
// with ldmatrix and writes 8 KB of new tiles for 128 mma (256 bytes per mma); the 128 x 256 block reads 32
// KB and writes 12 KB for 256 mma (176 bytes per mma), about a third less traffic per unit of math. 64 x 64
// is the largest warp tile whose 128 fp32 accumulators per thread still leave room for the fragments in 255
// registers; 256 x 128 would move the same bytes (one table entry in basics/matmul.py away). BK stays 64
// with 3 stages rather than 32 with 4: 32-deep tiles would prefetch less (96 rather than 128 k ahead), need
// twice the barriers, and the swizzle needs rows of 64 elements. Above 128 registers per thread one
// 256-thread block fills an SM's register file either way, so the wide tile's 144 KB of shared memory (per-
// block limit 163 KB on A100, 227 KB on H100/H200) costs no occupancy.
// Requires K % 8 == 0 and N % 8 == 0 (16-byte rows chunks for cp.async; the wrapper checks).
//
// Block order (GROUP_M): launched in plain row-major order, the ~130 blocks resident at once cover one or
// two block rows of C and therefore need all of B: for 8192^3 that is 128 MB streamed from DRAM per wave.
// With GROUP_M > 1 consecutive blocks walk down GROUP_M block rows before moving right, so a wave covers
// a GROUP_M x ~16 patch of C and its A and B panels stay in L2. GROUP_M = 1 is the plain order.
// MINB is the __launch_bounds__ occupancy hint (2 would cap ptxas at 128 registers; on sm_80 that spills).
// LAYOUT is the shared-memory layout of the A and B tiles (common.cuh: swizzled, padded or plain), the one
// knob of the swizzle-versus-padding comparison; swizzled is the default.
template <typename T, int BM, int BN, int BK, int STAGES, int WM, int WN, int GROUP_M, int MINB,
          int LAYOUT = attn::SMEM_SWIZZLED>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, MINB)
    matmul_mma(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, int M, int N, int K) {
    constexpr int WARPS_N = BN / WN, NTHREADS = (BM / WM) * WARPS_N * 32;
    constexpr int MT = WM / 16, NT = WN / 8;  // per warp: MT m16 tiles x NT n8 tiles
    static_assert(BM % WM == 0 && BN % WN == 0, "warps must tile the block tile exactly");
    static_assert(WM % 16 == 0 && WN % 16 == 0, "B fragments are loaded as n16 pairs, A as m16 tiles");
    static_assert(BK % 16 == 0 && STAGES >= 2, "K steps of 16 per mma; one stage loads while one computes");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    constexpr int A_TILE = BM * attn::smem_pitch<BK, LAYOUT>(), B_TILE = BK * attn::smem_pitch<BN, LAYOUT>();
    T* As = reinterpret_cast<T*>(smem_raw);  // STAGES x [BM][BK]
    T* Bs = As + STAGES * A_TILE;            // STAGES x [BK][BN]

    int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    int wm = (warp / WARPS_N) * WM, wn = (warp % WARPS_N) * WN;
    int block_m = blockIdx.y, block_n = blockIdx.x;
    if (GROUP_M > 1) {
        const int bid = blockIdx.y * gridDim.x + blockIdx.x, per_group = GROUP_M * gridDim.x;
        const int first_m = (bid / per_group) * GROUP_M, rows = min((int)gridDim.y - first_m, GROUP_M);
        block_m = first_m + (bid % per_group) % rows;
        block_n = (bid % per_group) / rows;
    }
    int m0 = block_m * BM, n0 = block_n * BN;
    int ktiles = (K + BK - 1) / BK;

    auto load_stage = [&](int stage, int kt) {
        int k0 = kt * BK;
        attn::load_tile_async<BM, BK, NTHREADS, LAYOUT>(As + stage * A_TILE, A + (long long)m0 * K + k0, K, M - m0, tid,
                                                        K - k0);
        attn::load_tile_async<BK, BN, NTHREADS, LAYOUT>(Bs + stage * B_TILE, B + (long long)k0 * N + n0, N, K - k0, tid,
                                                        N - n0);
    };

    float acc[MT][NT][4] = {};

    // Prologue: fill STAGES - 1 stages. Every iteration commits one group (possibly empty) so that
    // "wait until at most STAGES - 2 groups are pending" always means "the tile we need has landed".
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_stage(s, s);
        attn::cp_async_commit();
    }

    for (int kt = 0; kt < ktiles; ++kt) {
        attn::cp_async_wait<STAGES - 2>();
        __syncthreads();  // tile kt visible to all warps; all warps done with the stage we refill next
        int next = kt + STAGES - 1;
        if (next < ktiles) load_stage(next % STAGES, next);
        attn::cp_async_commit();

        const T* as = As + (kt % STAGES) * A_TILE;
        const T* bs = Bs + (kt % STAGES) * B_TILE;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned a[MT][4], b[NT][2];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                // Lanes 0-15 address rows 0-15 at column kk, lanes 16-31 the same rows at kk + 8.
                int r = wm + mt * 16 + (lane & 15), c = kk + (lane >> 4) * 8;
                attn::ldmatrix_x4(a[mt], attn::smem_addr(as + attn::tile_chunk_offset<BK, LAYOUT>(r, c >> 3, lane & 7)));
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                // B is stored [k][n]; .trans turns its rows into the column-major fragment mma wants.
                // Tiles: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
                int mi = lane >> 3;
                int r = kk + (lane & 7) + 8 * (mi & 1), c = wn + np * 16 + 8 * (mi >> 1);
                unsigned t[4];
                attn::ldmatrix_x4_trans(t, attn::smem_addr(bs + attn::tile_chunk_offset<BN, LAYOUT>(r, c >> 3, lane & 7)));
                b[2 * np][0] = t[0];
                b[2 * np][1] = t[1];
                b[2 * np + 1][0] = t[2];
                b[2 * np + 1][1] = t[3];
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) attn::mma_16816<T>(acc[mt][nt], a[mt], b[nt]);
        }
    }
    attn::cp_async_wait<0>();

    // Epilogue: each lane owns pairs of neighbouring columns; pack them into one 32-bit store.
    int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                int row = m0 + wm + mt * 16 + g + 8 * half, col = n0 + wn + nt * 8 + 2 * t;
                if (row < M && col < N) {  // N % 8 == 0, so col < N implies col + 1 < N
                    unsigned v = attn::pack2<T>(acc[mt][nt][2 * half], acc[mt][nt][2 * half + 1]);
                    *reinterpret_cast<unsigned*>(C + (long long)row * N + col) = v;
                }
            }
}
