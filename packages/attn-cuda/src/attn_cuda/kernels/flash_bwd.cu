// FlashAttention-2 backward on tensor cores.
//
// Given the forward's logsumexp L, the gradient needs no softmax statistics of its own:
//   P   = exp(scale * Q K^T - L)           recomputed tile by tile, never stored
//   dV  = P^T dO
//   dP  = dO V^T
//   dS  = P * (dP - D),  D = rowsum(dO * O) (flash_bwd_preprocess, one value per query row)
//   dK  = scale * dS^T Q,   dQ = scale * dS K
//
// One block owns BN = 16 * NWARPS keys of one KV head and loops over the query tiles (and, for GQA, over
// every query head that shares this KV head), so dK and dV accumulate in registers and are written once,
// with no atomics and no reduction over heads afterwards. dQ gets contributions from every key block and
// is accumulated in fp32 with atomic adds into dq_accum (converted to the input dtype by the caller).
//
// Each warp owns 16 keys. Computing the transposed products S^T = K Q^T and dP^T = V dO^T puts P^T and
// dS^T in the accumulator layout of this warp's 16 key rows, which is exactly the A operand that
// dV += P^T dO and dK += dS^T Q need: both go from registers straight into mma. Only dQ = dS K needs dS
// with queries as rows; dS^T goes through shared memory once and comes back transposed by ldmatrix.trans.
//
// Q and dO tiles are double-buffered with cp.async (the next tile loads while this one is used); K and V
// are loaded once. Causal (bottom-right) blocks skip query tiles that lie entirely above the diagonal.
#include "flash_bwd_common.cuh"

// D[b, h, i] = sum_d dO[b, i, h, d] * O[b, i, h, d]: one warp per query row.
template <typename T, int HD>
__global__ void flash_bwd_preprocess(const T* __restrict__ o, const T* __restrict__ dout, float* __restrict__ delta,
                                     int seqlen_q, int heads_q, long long o_sb, long long o_ss, long long o_sh,
                                     long long d_sb, long long d_ss, long long d_sh, long long rows) {
    long long r = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (r >= rows) return;
    int i = r % seqlen_q;
    int h = (r / seqlen_q) % heads_q;
    int b = r / ((long long)seqlen_q * heads_q);
    const T* op = o + b * o_sb + h * o_sh + i * o_ss;
    const T* dp = dout + b * d_sb + h * d_sh + i * d_ss;
    float acc = 0.f;
    for (int d = lane; d < HD; d += 32) acc += attn::to_float(op[d]) * attn::to_float(dp[d]);
    acc = attn::warp_sum(acc);
    if (lane == 0) delta[r] = acc;  // r == (b * heads_q + h) * seqlen_q + i
}

template <typename T, int HD, int BM, int NWARPS, bool CAUSAL, bool PAIR_DQ = false>
__global__ void __launch_bounds__(NWARPS * 32) flash_bwd_mma(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ dout,
    const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dq_accum,
    T* __restrict__ dk, T* __restrict__ dv, int seqlen_q, int seqlen_k, int heads_q, int heads_k,
    long long q_sb, long long q_ss, long long q_sh, long long k_sb, long long k_ss, long long k_sh,
    long long v_sb, long long v_ss, long long v_sh, long long do_sb, long long do_ss, long long do_sh,
    float scale, float scale_log2) {
    constexpr int BN = 16 * NWARPS, NTHREADS = NWARPS * 32;
    constexpr int KT = HD / 16;   // k16 steps over the head dim
    constexpr int QT = BM / 8;    // n8 tiles of queries in S^T and dP^T
    constexpr int DT = HD / 8;    // n8 tiles of the head dim in dK, dV
    constexpr int DS_PITCH = BM + 8;  // padded rows of dS^T: 8 rows of an ldmatrix fall in distinct banks
    constexpr int MW = BM / 16;           // m16 tiles of the dQ block
    constexpr int DW = NWARPS / MW;       // warps sharing one m16 tile of dQ, each a slice of the head dim
    constexpr int DQ_T = HD / DW / 8;     // n8 tiles of dQ per warp
    static_assert(NWARPS % MW == 0 && (HD / DW) % 16 == 0, "dQ tile must split evenly across warps");
    constexpr float LOG2E = 1.4426950408889634f;
    // The step's ldmatrix addresses all derive from the lane, so ptxas hoists them out of the loop and
    // keeps them live next to each thread's HD accumulators of dK and dV. From BM * HD = 4096 (hd128 with
    // 32 queries a step, hd64 with 64) that spilled 24-84 bytes; reading the lane afresh each step (a
    // volatile read ptxas cannot hoist) makes it recompute them instead, and nothing spills.
    constexpr bool FRESH_LANE = BM * HD >= 4096;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* sK = reinterpret_cast<T*>(smem_raw);  // [BN][HD]
    T* sV = sK + BN * HD;                    // [BN][HD]
    T* sQ = sV + BN * HD;                    // [2][BM][HD]
    T* sdO = sQ + 2 * BM * HD;               // [2][BM][HD]
    T* sdS = sdO + 2 * BM * HD;              // [BN][DS_PITCH], dS^T

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * BN, hk = blockIdx.y, b = blockIdx.z;
    const int group = heads_q / heads_k;
    const int diag = seqlen_k - seqlen_q;

    // Query tiles this key block must visit: causal skips those whose last row sees none of our keys.
    const attn::BwdSteps<BM, CAUSAL> sched(n0, hk, group, seqlen_q, diag);
    const int steps = sched.steps;

    const T* k_base = k + b * k_sb + hk * k_sh + (long long)n0 * k_ss;
    const T* v_base = v + b * v_sb + hk * v_sh + (long long)n0 * v_ss;

    auto load_q_do = [&](int step, int stage) {
        attn::load_q_do_async<HD, NTHREADS>(sched, step, stage, sQ, sdO, q, q_sb, q_sh, q_ss, dout, do_sb, do_sh,
                                            do_ss, b, seqlen_q, tid);
    };

    attn::load_tile_async<BN, HD, NTHREADS>(sK, k_base, k_ss, seqlen_k - n0, tid);
    attn::load_tile_async<BN, HD, NTHREADS>(sV, v_base, v_ss, seqlen_k - n0, tid);
    if (steps > 0) load_q_do(0, 0);
    attn::cp_async_commit();

    float acc_dk[DT][4], acc_dv[DT][4];
#pragma unroll
    for (int i = 0; i < DT; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_dk[i][e] = acc_dv[i][e] = 0.f;

    const int kw = warp * 16;  // this warp's first key row inside the block

    for (int step = 0; step < steps; ++step) {
        const int stage = step & 1;
        if (step + 1 < steps) {
            load_q_do(step + 1, stage ^ 1);
            attn::cp_async_commit();
            attn::cp_async_wait<1>();
        } else {
            attn::cp_async_wait<0>();
        }
        __syncthreads();
        int h, m0;
        sched.tile(step, h, m0);
        // The block's lane, g and t again (same values), read afresh where FRESH_LANE says so.
        const int lane = FRESH_LANE ? attn::fresh_tid() % 32 : tid % 32, g = lane >> 2, t = lane & 3;
        const T* q_s = sQ + stage * BM * HD;
        const T* do_s = sdO + stage * BM * HD;

        // ---- S^T = K Q^T and dP^T = V dO^T, both 16 keys x BM queries per warp ----
        float s[QT][4], dp[QT][4];
#pragma unroll
        for (int i = 0; i < QT; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[i][e] = dp[i][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
            unsigned ka[4], va[4];
            const int ar = kw + (lane & 15), ac = kk * 16 + (lane >> 4) * 8;
            attn::ldmatrix_x4(ka, attn::smem_addr(sK + attn::swz_chunk<HD>(ar, ac >> 3, lane & 7)));
            attn::ldmatrix_x4(va, attn::smem_addr(sV + attn::swz_chunk<HD>(ar, ac >> 3, lane & 7)));
#pragma unroll
            for (int np = 0; np < QT / 2; ++np) {
                // Q and dO stored [query][d] are B = Q^T, dO^T in column-major form: plain ldmatrix.
                const int mi = lane >> 3;
                const int r = np * 16 + (lane & 7) + 8 * (mi >> 1), c = kk * 16 + 8 * (mi & 1);
                unsigned fq[4], fd[4];
                attn::ldmatrix_x4(fq, attn::smem_addr(q_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                attn::ldmatrix_x4(fd, attn::smem_addr(do_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                const unsigned bq0[2] = {fq[0], fq[1]}, bq1[2] = {fq[2], fq[3]};
                const unsigned bd0[2] = {fd[0], fd[1]}, bd1[2] = {fd[2], fd[3]};
                attn::mma_16816<T>(s[2 * np], ka, bq0);
                attn::mma_16816<T>(s[2 * np + 1], ka, bq1);
                attn::mma_16816<T>(dp[2 * np], va, bd0);
                attn::mma_16816<T>(dp[2 * np + 1], va, bd1);
            }
        }

        // ---- P^T = exp2(S^T * scale log2e - L log2e), masked; dS^T = P^T (dP^T - D) ----
        const float* lse_h = lse + ((long long)b * heads_q + h) * seqlen_q;
        const float* delta_h = delta + ((long long)b * heads_q + h) * seqlen_q;
#pragma unroll
        for (int nt = 0; nt < QT; ++nt)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const int query = m0 + nt * 8 + 2 * t + c;
                // Rows past seqlen_q (zero-filled Q) and empty rows (L = +inf) get P = 0.
                const float l2 = query < seqlen_q ? lse_h[query] * LOG2E : ATTN_INF;
                const float dl = query < seqlen_q ? delta_h[query] : 0.f;
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int e = 2 * r + c;
                    const int key = n0 + kw + g + 8 * r;
                    float p = attn::fast_exp2(s[nt][e] * scale_log2 - l2);
                    if (key >= seqlen_k || (CAUSAL && key > query + diag)) p = 0.f;
                    s[nt][e] = p;
                    dp[nt][e] = p * (dp[nt][e] - dl);
                }
            }

        // ---- dV += P^T dO and dK += dS^T Q: A from registers, B = dO, Q through ldmatrix.trans ----
#pragma unroll
        for (int kq = 0; kq < BM / 16; ++kq) {
            const unsigned pa[4] = {attn::pack2<T>(s[2 * kq][0], s[2 * kq][1]), attn::pack2<T>(s[2 * kq][2], s[2 * kq][3]),
                                    attn::pack2<T>(s[2 * kq + 1][0], s[2 * kq + 1][1]),
                                    attn::pack2<T>(s[2 * kq + 1][2], s[2 * kq + 1][3])};
            const unsigned da[4] = {attn::pack2<T>(dp[2 * kq][0], dp[2 * kq][1]), attn::pack2<T>(dp[2 * kq][2], dp[2 * kq][3]),
                                    attn::pack2<T>(dp[2 * kq + 1][0], dp[2 * kq + 1][1]),
                                    attn::pack2<T>(dp[2 * kq + 1][2], dp[2 * kq + 1][3])};
#pragma unroll
            for (int dpair = 0; dpair < DT / 2; ++dpair) {
                const int mi = lane >> 3;
                const int r = kq * 16 + (lane & 7) + 8 * (mi & 1), c = dpair * 16 + 8 * (mi >> 1);
                unsigned fo[4], fq[4];
                attn::ldmatrix_x4_trans(fo, attn::smem_addr(do_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                attn::ldmatrix_x4_trans(fq, attn::smem_addr(q_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                const unsigned bo0[2] = {fo[0], fo[1]}, bo1[2] = {fo[2], fo[3]};
                const unsigned bq0[2] = {fq[0], fq[1]}, bq1[2] = {fq[2], fq[3]};
                attn::mma_16816<T>(acc_dv[2 * dpair], pa, bo0);
                attn::mma_16816<T>(acc_dv[2 * dpair + 1], pa, bo1);
                attn::mma_16816<T>(acc_dk[2 * dpair], da, bq0);
                attn::mma_16816<T>(acc_dk[2 * dpair + 1], da, bq1);
            }
        }

        // ---- dS^T to shared memory, then dQ += scale * dS K (atomics into fp32) ----
#pragma unroll
        for (int nt = 0; nt < QT; ++nt)
#pragma unroll
            for (int r = 0; r < 2; ++r)
                *reinterpret_cast<unsigned*>(sdS + (kw + g + 8 * r) * DS_PITCH + nt * 8 + 2 * t) =
                    attn::pack2<T>(dp[nt][2 * r], dp[nt][2 * r + 1]);
        __syncthreads();
        {
            const int mt = warp % MW, d0 = (warp / MW) * (HD / DW);
            float acc_dq[DQ_T][4];
#pragma unroll
            for (int i = 0; i < DQ_T; ++i) acc_dq[i][0] = acc_dq[i][1] = acc_dq[i][2] = acc_dq[i][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {  // reduction over this block's keys
                const int mi = lane >> 3;
                // A = dS (queries x keys) from dS^T: rows addressed are keys, ldmatrix.trans transposes.
                // Tiles: (q 0-7, keys 0-7), (q 8-15, keys 0-7), (q 0-7, keys 8-15), (q 8-15, keys 8-15).
                unsigned a[4];
                const int ar = kk * 16 + (lane & 7) + 8 * (mi >> 1), ac = mt * 16 + 8 * (mi & 1);
                attn::ldmatrix_x4_trans(a, attn::smem_addr(sdS + ar * DS_PITCH + ac));
#pragma unroll
                for (int dpair = 0; dpair < DQ_T / 2; ++dpair) {
                    // B = K (keys x d) stored [key][d]: column-major fragment through .trans, as V in the forward.
                    const int r = kk * 16 + (lane & 7) + 8 * (mi & 1), c = d0 + dpair * 16 + 8 * (mi >> 1);
                    unsigned f[4];
                    attn::ldmatrix_x4_trans(f, attn::smem_addr(sK + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                    const unsigned b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
                    attn::mma_16816<T>(acc_dq[2 * dpair], a, b0);
                    attn::mma_16816<T>(acc_dq[2 * dpair + 1], a, b1);
                }
            }
            // dq_accum is (batch, seqlen_q, heads_q, HD) fp32, contiguous.
            // The scalar loop stays as it was for the builds without PAIR_DQ (the pair loop, same adds in
            // the same order, allocates registers differently and has not been timed as the default).
            if constexpr (PAIR_DQ) {
#pragma unroll
                for (int dt = 0; dt < DQ_T; ++dt)
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const int query = m0 + mt * 16 + g + 8 * r;
                        const int d = d0 + dt * 8 + 2 * t;
                        if (query < seqlen_q)
                            attn::atomic_add_pair<true>(dq_accum + (((long long)b * seqlen_q + query) * heads_q + h) * HD + d,
                                                  acc_dq[dt][2 * r] * scale, acc_dq[dt][2 * r + 1] * scale);
                    }
            } else {
#pragma unroll
                for (int dt = 0; dt < DQ_T; ++dt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int query = m0 + mt * 16 + g + 8 * (e >> 1);
                        const int d = d0 + dt * 8 + 2 * t + (e & 1);
                        if (query < seqlen_q)
                            atomicAdd(dq_accum + (((long long)b * seqlen_q + query) * heads_q + h) * HD + d, acc_dq[dt][e] * scale);
                    }
            }
        }
        __syncthreads();  // sdS and this Q/dO stage are free for the next step
    }

    // ---- write dK (scaled) and dV: (batch, seqlen_k, heads_k, HD), contiguous ----
#pragma unroll
    for (int dt = 0; dt < DT; ++dt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int key = n0 + kw + g + 8 * r;
            if (key >= seqlen_k) continue;
            const long long off = (((long long)b * seqlen_k + key) * heads_k + hk) * HD + dt * 8 + 2 * t;
            *reinterpret_cast<unsigned*>(dk + off) = attn::pack2<T>(acc_dk[dt][2 * r] * scale, acc_dk[dt][2 * r + 1] * scale);
            *reinterpret_cast<unsigned*>(dv + off) = attn::pack2<T>(acc_dv[dt][2 * r], acc_dv[dt][2 * r + 1]);
        }
}
