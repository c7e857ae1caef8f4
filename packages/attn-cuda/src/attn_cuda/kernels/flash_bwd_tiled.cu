// FlashAttention-2 backward on tensor cores, with P and dS staged in shared memory (FA2's own tiling).
//
// The same algebra as flash_bwd.cu (see there), computed in a different shape. flash_bwd_mma gives each
// warp 16 keys and all of a step's 16 queries, so P^T and dS^T stay in registers, but every warp reads the
// whole Q and dO tile for the few mma it issues: about 128 bytes of ldmatrix per kFLOP, which at an H200's
// ~33 TB/s of shared-memory bandwidth (128 bytes a clock per SM) bounds it near 260 TFLOP/s; it ran at
// 172. Here a block owns BN keys, steps over BM queries at a time, and every product is tiled over all
// warps in two dimensions, so each fragment read from shared memory feeds several mma:
//
//   S  = Q K^T, dP = dO V^T      BM x BN, warps WM_S x (NWARPS / WM_S)
//   P  = exp2(S log2e scale - L log2e), dS = P (dP - D): both to shared memory as 16-bit values
//   dV += P^T dO, dK += dS^T Q   BN x HD, warps WN_KV x (NWARPS / WN_KV), accumulated in registers
//   dQ  = dS K                   BM x HD, warps WM_Q x (NWARPS / WM_Q), added into fp32 dq_accum
//
// At hd128 with BM = 64, BN = 128 and 2 x 4 grids that is about 58 bytes of ldmatrix per kFLOP. The price
// is the round trip of P and dS through shared memory, and registers: 128 fp32 dK/dV accumulators a
// thread beside a 32 x 32 S or dP tile, which is why S and dP are computed one after the other and every
// ldmatrix address is derived from one lane address per operand (attn::swz_step).
//
// Q, dO and the step's L and D rows are double-buffered by cp.async (the next step's loads are in flight
// while this one computes). K and V are loaded once. GQA and causal skipping as in flash_bwd.cu.
#include "flash_bwd_common.cuh"

namespace {

// acc = A B^T on one warp's (16 MT) x (8 NT) tile, A and B both stored [row][HD] swizzled in shared
// memory (Q K^T, dO V^T), the reduction over all HD channels. a0, b0: the first A and B row of the tile.
template <typename T, int HD, int MT, int NT>
ATTN_DEVICE void warp_tile_abt(float (&acc)[MT][NT][4], const T* a_s, const T* b_s, int a0, int b0, int lane) {
    const int mi = lane >> 3;
    // A stored [m][k]: plain ldmatrix, lanes 0-15 rows 0-15 of chunk 0, lanes 16-31 of chunk 1.
    const unsigned a_at = attn::smem_addr(a_s + attn::swz_chunk<HD>(a0 + (lane & 15), lane >> 4, lane & 7));
    // B^T's columns are B's rows, stored [n][k]: plain ldmatrix gives two n8 tiles.
    const unsigned b_at = attn::smem_addr(b_s + attn::swz_chunk<HD>(b0 + (lane & 7) + 8 * (mi >> 1), mi & 1, lane & 7));
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
        unsigned fa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) attn::ldmatrix_x4(fa[mt], attn::swz_step<HD>(a_at, mt * 16, 2 * kk));
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
            unsigned f[4];
            attn::ldmatrix_x4(f, attn::swz_step<HD>(b_at, np * 16, 2 * kk));
            const unsigned f0[2] = {f[0], f[1]}, f1[2] = {f[2], f[3]};
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                attn::mma_16816<T>(acc[mt][2 * np], fa[mt], f0);
                attn::mma_16816<T>(acc[mt][2 * np + 1], fa[mt], f1);
            }
        }
    }
}

}  // namespace

template <typename T, int HD, int BM, int BN, int NWARPS, int WM_S, int WN_KV, int WM_Q, bool CAUSAL>
__global__ void __launch_bounds__(NWARPS * 32) flash_bwd_mma_tiled(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ dout,
    const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dq_accum,
    T* __restrict__ dk, T* __restrict__ dv, int seqlen_q, int seqlen_k, int heads_q, int heads_k,
    long long q_sb, long long q_ss, long long q_sh, long long k_sb, long long k_ss, long long k_sh,
    long long v_sb, long long v_ss, long long v_sh, long long do_sb, long long do_ss, long long do_sh,
    float scale, float scale_log2) {
    constexpr int NTHREADS = NWARPS * 32;
    // Warp tiles of the three products: rows x columns, in m16 tiles and n8 tiles.
    constexpr int S_M = BM / WM_S, S_N = BN / (NWARPS / WM_S);          // queries x keys
    constexpr int KV_M = BN / WN_KV, KV_N = HD / (NWARPS / WN_KV);      // keys x head dim
    constexpr int Q_M = BM / WM_Q, Q_N = HD / (NWARPS / WM_Q);          // queries x head dim
    constexpr int S_MT = S_M / 16, S_NT = S_N / 8, KV_MT = KV_M / 16, KV_NT = KV_N / 8;
    constexpr int Q_MT = Q_M / 16, Q_NT = Q_N / 8;
    static_assert(NWARPS % WM_S == 0 && NWARPS % WN_KV == 0 && NWARPS % WM_Q == 0, "warp grids");
    static_assert(S_M % 16 == 0 && S_N % 16 == 0 && KV_M % 16 == 0 && KV_N % 16 == 0, "warp tiles");
    static_assert(Q_M % 16 == 0 && Q_N % 16 == 0 && BM % 16 == 0 && BN % 64 == 0 && HD % 64 == 0, "tiles");
    // swz_step's offsets stay clear of a warp's own chunk bits when every warp-tile width is a power of 2.
    static_assert((S_N & (S_N - 1)) == 0 && (KV_M & (KV_M - 1)) == 0 && (KV_N & (KV_N - 1)) == 0 &&
                      (Q_N & (Q_N - 1)) == 0,
                  "warp-tile widths must be powers of 2");
    static_assert(2 * BM <= NTHREADS, "one thread per logsumexp and per D row of a step");
    constexpr float LOG2E = 1.4426950408889634f;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* sK = reinterpret_cast<T*>(smem_raw);  // [BN][HD]
    T* sV = sK + BN * HD;                    // [BN][HD]
    T* sQ = sV + BN * HD;                    // [2][BM][HD]
    T* sdO = sQ + 2 * BM * HD;               // [2][BM][HD]
    T* sP = sdO + 2 * BM * HD;               // [BM][BN]
    T* sdS = sP + BM * BN;                   // [BM][BN]
    float* sRows = reinterpret_cast<float*>(sdS + BM * BN);  // [2][2][BM]: L, then D, per stage

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * BN, hk = blockIdx.y, b = blockIdx.z;
    const int group = heads_q / heads_k;
    const int diag = seqlen_k - seqlen_q;

    const attn::BwdSteps<BM, CAUSAL> sched(n0, hk, group, seqlen_q, diag);
    const int steps = sched.steps;
    auto load_q_do = [&](int step, int stage) {
        attn::load_q_do_async<HD, NTHREADS>(sched, step, stage, sQ, sdO, q, q_sb, q_sh, q_ss, dout, do_sb, do_sh,
                                            do_ss, b, seqlen_q, tid);
    };
    // The step's rows of L and D, one 4-byte cp.async a thread: threads 0..BM-1 copy L, BM..2BM-1 D.
    // Rows past seqlen_q are zero-filled: their Q and dO rows are zero too, so whatever P they give,
    // dS = P (dP - D) = 0 and P^T dO adds nothing.
    auto load_rows = [&](int step, int stage) {
        int h, m0;
        sched.tile(step, h, m0);
        if (tid >= 2 * BM) return;
        const int row = m0 + tid % BM;
        const float* src = (tid < BM ? lse : delta) + ((long long)b * heads_q + h) * seqlen_q;
        attn::cp_async_4(attn::smem_addr(sRows + stage * 2 * BM + tid), row < seqlen_q ? src + row : src, row < seqlen_q);
    };

    attn::load_tile_async<BN, HD, NTHREADS>(sK, k + b * k_sb + hk * k_sh + (long long)n0 * k_ss, k_ss, seqlen_k - n0, tid);
    attn::load_tile_async<BN, HD, NTHREADS>(sV, v + b * v_sb + hk * v_sh + (long long)n0 * v_ss, v_ss, seqlen_k - n0, tid);
    if (steps > 0) {
        load_q_do(0, 0);
        load_rows(0, 0);
    }
    attn::cp_async_commit();

    // This warp's place in each product's warp grid.
    const int s_m0 = (warp % WM_S) * S_M, s_n0 = (warp / WM_S) * S_N;
    const int kv_m0 = (warp % WN_KV) * KV_M, kv_n0 = (warp / WN_KV) * KV_N;
    const int q_m0 = (warp % WM_Q) * Q_M, q_n0 = (warp / WM_Q) * Q_N;

    float acc_dk[KV_MT][KV_NT][4], acc_dv[KV_MT][KV_NT][4];
#pragma unroll
    for (int i = 0; i < KV_MT; ++i)
#pragma unroll
        for (int j = 0; j < KV_NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc_dk[i][j][e] = acc_dv[i][j][e] = 0.f;

    for (int step = 0; step < steps; ++step) {
        const int stage = step & 1;
        if (step + 1 < steps) {
            load_q_do(step + 1, stage ^ 1);
            load_rows(step + 1, stage ^ 1);
            attn::cp_async_commit();
            attn::cp_async_wait<1>();
        } else {
            attn::cp_async_wait<0>();
        }
        __syncthreads();
        int h, m0;
        sched.tile(step, h, m0);
        const T* q_s = sQ + stage * BM * HD;
        const T* do_s = sdO + stage * BM * HD;
        const float* l_s = sRows + stage * 2 * BM;
        const float* d_s = l_s + BM;

        // ---- S = Q K^T on this warp's S_M x S_N tile, then P (masked) to shared memory ----
        // S and dP are computed one after the other, and P is kept as the 16-bit pairs stored, not as
        // fp32: with both fp32 tiles live beside dK and dV the kernel does not fit in 255 registers.
        unsigned p16[S_MT][S_NT][2];
        // This lane's first P element, (row s_m0 + g, column s_n0 + 2t); dS sits BM * BN elements further.
        const unsigned p_st = attn::smem_addr(sP + attn::swz<BN>(s_m0 + g, s_n0 + 2 * t));
        constexpr unsigned DS_OFF = BM * BN * sizeof(T);
        // Only the last key block and, causal, the blocks the diagonal crosses need the mask.
        const bool edge = n0 + BN > seqlen_k || (CAUSAL && n0 + BN - 1 > m0 + diag);
        {
            float s[S_MT][S_NT][4];
            warp_tile_abt<T, HD, S_MT, S_NT>(s, q_s, sK, s_m0, s_n0, lane);
#pragma unroll
            for (int mt = 0; mt < S_MT; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int row = s_m0 + mt * 16 + g + 8 * r;  // inside the tile
                    const float l2 = l_s[row] * LOG2E;
#pragma unroll
                    for (int nt = 0; nt < S_NT; ++nt) {
                        float p[2];
#pragma unroll
                        for (int c = 0; c < 2; ++c) {
                            p[c] = attn::fast_exp2(s[mt][nt][2 * r + c] * scale_log2 - l2);
                            const int key = n0 + s_n0 + nt * 8 + 2 * t + c;
                            if (edge && (key >= seqlen_k || (CAUSAL && key > m0 + row + diag))) p[c] = 0.f;
                        }
                        p16[mt][nt][r] = attn::pack2<T>(p[0], p[1]);
                        attn::st_shared_u32(attn::swz_step<BN>(p_st, mt * 16 + 8 * r, nt), p16[mt][nt][r]);
                    }
                }
        }

        // ---- dP = dO V^T on the same tile, then dS = P (dP - D) to shared memory ----
        {
            float dp[S_MT][S_NT][4];
            warp_tile_abt<T, HD, S_MT, S_NT>(dp, do_s, sV, s_m0, s_n0, lane);
#pragma unroll
            for (int mt = 0; mt < S_MT; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const float dl = d_s[s_m0 + mt * 16 + g + 8 * r];
#pragma unroll
                    for (int nt = 0; nt < S_NT; ++nt) {
                        const float2 p = attn::unpack2<T>(p16[mt][nt][r]);
                        attn::st_shared_u32(attn::swz_step<BN>(p_st, mt * 16 + 8 * r, nt) + DS_OFF,
                                            attn::pack2<T>(p.x * (dp[mt][nt][2 * r] - dl), p.y * (dp[mt][nt][2 * r + 1] - dl)));
                    }
                }
        }
        __syncthreads();

        // --8<-- [start:dkdv]
        // ---- dV += P^T dO, dK += dS^T Q on this warp's KV_M keys x KV_N channels ----
        {
            // The lane read afresh (the same value): otherwise ptxas computes this phase's lane addresses
            // once, before the step loop, and holds them through all of it beside the accumulators.
            const int lane = attn::fresh_tid() % 32, mi = lane >> 3;
            // A = P^T, dS^T from P, dS stored [query][key]: rows addressed are queries, .trans. dS is P's
            // address plus a constant.
            const unsigned p_at = attn::smem_addr(sP + attn::swz_chunk<BN>((lane & 7) + 8 * (mi >> 1), kv_m0 / 8 + (mi & 1), lane & 7));
            // B = dO, Q stored [query][d]: .trans, two n8 tiles of channels; Q sits at dO's address minus 2 BM HD.
            const unsigned o_at = attn::smem_addr(do_s + attn::swz_chunk<HD>((lane & 7) + 8 * (mi & 1), kv_n0 / 8 + (mi >> 1), lane & 7));
            const unsigned q_back = 2 * BM * HD * sizeof(T);
#pragma unroll
            for (int kq = 0; kq < BM / 16; ++kq) {
                unsigned ap[KV_MT][4], as[KV_MT][4];
#pragma unroll
                for (int mt = 0; mt < KV_MT; ++mt) {
                    const unsigned at = attn::swz_step<BN>(p_at, kq * 16, 2 * mt);
                    attn::ldmatrix_x4_trans(ap[mt], at);
                    attn::ldmatrix_x4_trans(as[mt], at + DS_OFF);
                }
#pragma unroll
                for (int np = 0; np < KV_NT / 2; ++np) {
                    unsigned fo[4], fq[4];
                    const unsigned at = attn::swz_step<HD>(o_at, kq * 16, 2 * np);
                    attn::ldmatrix_x4_trans(fo, at);
                    attn::ldmatrix_x4_trans(fq, at - q_back);
                    const unsigned bo0[2] = {fo[0], fo[1]}, bo1[2] = {fo[2], fo[3]};
                    const unsigned bq0[2] = {fq[0], fq[1]}, bq1[2] = {fq[2], fq[3]};
#pragma unroll
                    for (int mt = 0; mt < KV_MT; ++mt) {
                        attn::mma_16816<T>(acc_dv[mt][2 * np], ap[mt], bo0);
                        attn::mma_16816<T>(acc_dv[mt][2 * np + 1], ap[mt], bo1);
                        attn::mma_16816<T>(acc_dk[mt][2 * np], as[mt], bq0);
                        attn::mma_16816<T>(acc_dk[mt][2 * np + 1], as[mt], bq1);
                    }
                }
            }
        }

        // --8<-- [end:dkdv]
        // ---- dQ += scale dS K on this warp's Q_M queries x Q_N channels, fp32 atomics ----
        {
            const int lane = attn::fresh_tid() % 32, mi = lane >> 3;  // afresh, as above
            float acc_dq[Q_MT][Q_NT][4];
#pragma unroll
            for (int i = 0; i < Q_MT; ++i)
#pragma unroll
                for (int j = 0; j < Q_NT; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc_dq[i][j][e] = 0.f;
            // A = dS stored [query][key]: plain ldmatrix. B = K stored [key][d]: .trans, two n8 tiles.
            const unsigned a_at = attn::smem_addr(sdS + attn::swz_chunk<BN>(q_m0 + (lane & 15), lane >> 4, lane & 7));
            const unsigned k_at = attn::smem_addr(sK + attn::swz_chunk<HD>((lane & 7) + 8 * (mi & 1), q_n0 / 8 + (mi >> 1), lane & 7));
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                unsigned a[Q_MT][4];
#pragma unroll
                for (int mt = 0; mt < Q_MT; ++mt) attn::ldmatrix_x4(a[mt], attn::swz_step<BN>(a_at, mt * 16, 2 * kk));
#pragma unroll
                for (int np = 0; np < Q_NT / 2; ++np) {
                    unsigned f[4];
                    attn::ldmatrix_x4_trans(f, attn::swz_step<HD>(k_at, kk * 16, 2 * np));
                    const unsigned b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
#pragma unroll
                    for (int mt = 0; mt < Q_MT; ++mt) {
                        attn::mma_16816<T>(acc_dq[mt][2 * np], a[mt], b0);
                        attn::mma_16816<T>(acc_dq[mt][2 * np + 1], a[mt], b1);
                    }
                }
            }
            // dq_accum is (batch, seqlen_q, heads_q, HD) fp32, contiguous.
#pragma unroll
            for (int mt = 0; mt < Q_MT; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int query = m0 + q_m0 + mt * 16 + g + 8 * r;
                    if (query >= seqlen_q) continue;
                    float* row = dq_accum + (((long long)b * seqlen_q + query) * heads_q + h) * HD + q_n0 + 2 * t;
#pragma unroll
                    for (int nt = 0; nt < Q_NT; ++nt)
                        attn::atomic_add_pair<true>(row + nt * 8, acc_dq[mt][nt][2 * r] * scale, acc_dq[mt][nt][2 * r + 1] * scale);
                }
        }
        __syncthreads();  // P, dS and this stage's Q, dO, L and D are free
    }

    // ---- write dK (scaled) and dV: (batch, seqlen_k, heads_k, HD), contiguous ----
#pragma unroll
    for (int mt = 0; mt < KV_MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int key = n0 + kv_m0 + mt * 16 + g + 8 * r;
            if (key >= seqlen_k) continue;
            const long long row = (((long long)b * seqlen_k + key) * heads_k + hk) * HD + kv_n0 + 2 * t;
#pragma unroll
            for (int nt = 0; nt < KV_NT; ++nt) {
                *reinterpret_cast<unsigned*>(dk + row + nt * 8) =
                    attn::pack2<T>(acc_dk[mt][nt][2 * r] * scale, acc_dk[mt][nt][2 * r + 1] * scale);
                *reinterpret_cast<unsigned*>(dv + row + nt * 8) =
                    attn::pack2<T>(acc_dv[mt][nt][2 * r], acc_dv[mt][nt][2 * r + 1]);
            }
        }
}
