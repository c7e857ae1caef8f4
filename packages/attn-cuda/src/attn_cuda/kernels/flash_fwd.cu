// FlashAttention-2 forward on tensor cores (mma.sync m16n8k16, fp16/bf16 in, fp32 accumulate).
//
// One block computes BM = 16 * NWARPS query rows of one (batch, head); each warp owns 16 of those rows
// from start to end, so the softmax statistics of a row live in the 4 lanes of one quad and never need
// shared memory. The block walks the keys in tiles of BN:
//
//   S   = Q K_j^T            Q fragments stay in registers the whole time (loaded once by ldmatrix);
//                            K_j comes from swizzled shared memory through ldmatrix (no conflicts).
//   m   = max(m, rowmax S)   online softmax in base 2: exp(x) = exp2(x * log2 e), one ex2 per element,
//   P   = exp2(S - m)        the scale folded into log2 e.
//   O   = O * exp2(m_old - m) + P V_j
//                            P goes from accumulator registers straight into the A operand of the next
//                            mma (the C layout of two n8 tiles is the A layout of one k16 step); V_j is
//                            read with ldmatrix.trans because mma wants B column-major.
//
// K and V tiles are double-buffered with cp.async: while the warps compute on tile j, tile j+1 is
// already on its way from global memory. Rows past the end of a tensor are zero-filled by cp.async and
// their scores masked, so nothing outside the tensors is ever read (the tests put NaN there).
//
// Causal masking is aligned at the bottom right (flash-attn's convention): query i sees key j iff
// j <= i + seqlen_k - seqlen_q. Tiles entirely above the diagonal are skipped; only tiles that cross it
// (or the ragged last tile) pay for the mask. Heavy query blocks (late rows) are scheduled first: the
// hardware starts blocks in linear order (x fastest), so the grid is (query blocks reversed, heads,
// batch); with heads_first (causal only) it is (heads, query blocks reversed, batch), and the first wave
// holds the longest block of every head instead of all of head 0's, which evens out the tail.
//
// GQA/MQA: query head h reads KV head h / (heads_q / heads_k). Output: O (batch, seqlen_q, heads, d) and
// the logsumexp (batch, heads, seqlen_q) in natural log; rows that see no key give O = 0, lse = +inf.
#include "common.cuh"

template <typename T, int HD, int BN, int NWARPS, bool CAUSAL>
__global__ void __launch_bounds__(NWARPS * 32) flash_fwd_mma(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
    float* __restrict__ lse, int seqlen_q, int seqlen_k, int heads_q, int group,
    long long q_sb, long long q_ss, long long q_sh, long long k_sb, long long k_ss, long long k_sh,
    long long v_sb, long long v_ss, long long v_sh, long long o_sb, long long o_ss, long long o_sh,
    float scale_log2, int heads_first) {
    constexpr int BM = 16 * NWARPS, NTHREADS = NWARPS * 32;
    constexpr int KT = HD / 16;  // k16 steps of Q K^T
    constexpr int NS = BN / 8;   // n8 tiles of S
    constexpr int DT = HD / 8;   // n8 tiles of O

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* sQ = reinterpret_cast<T*>(smem_raw);  // [BM][HD]; reused to stage O at the end
    T* sK = sQ + BM * HD;                    // [2][BN][HD]
    T* sV = sK + 2 * BN * HD;                // [2][BN][HD]

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int g = lane >> 2, t = lane & 3;
    const bool hf = CAUSAL && heads_first;
    const int m_block = !CAUSAL ? blockIdx.x : hf ? gridDim.y - 1 - blockIdx.y : gridDim.x - 1 - blockIdx.x;
    const int h = hf ? blockIdx.x : blockIdx.y, b = blockIdx.z, hk = h / group;
    const int m0 = m_block * BM;
    const int diag = seqlen_k - seqlen_q;  // query i sees keys j <= i + diag (causal)

    const T* q_base = q + b * q_sb + h * q_sh + (long long)m0 * q_ss;
    const T* k_base = k + b * k_sb + hk * k_sh;
    const T* v_base = v + b * v_sb + hk * v_sh;
    T* o_base = o + b * o_sb + h * o_sh;
    float* lse_base = lse + ((long long)b * heads_q + h) * seqlen_q;

    int n_end = seqlen_k;
    if (CAUSAL) n_end = min(seqlen_k, m0 + BM + diag);  // the block's last row sees keys < m0 + BM + diag
    const int n_tiles = n_end > 0 ? (n_end + BN - 1) / BN : 0;

    // Rows (g and g + 8 of this warp's 16) and their running statistics, in log2 units of scaled scores.
    float row_max[2] = {ATTN_NEG_INF, ATTN_NEG_INF}, row_sum[2] = {0.f, 0.f};
    float acc_o[DT][4];
#pragma unroll
    for (int i = 0; i < DT; ++i) acc_o[i][0] = acc_o[i][1] = acc_o[i][2] = acc_o[i][3] = 0.f;
    unsigned q_frag[KT][4];

    if (n_tiles > 0) {
        attn::load_tile_async<BM, HD, NTHREADS>(sQ, q_base, q_ss, seqlen_q - m0, tid);
        attn::load_tile_async<BN, HD, NTHREADS>(sK, k_base, k_ss, seqlen_k, tid);
        attn::load_tile_async<BN, HD, NTHREADS>(sV, v_base, v_ss, seqlen_k, tid);
        attn::cp_async_commit();
    }

    // --8<-- [start:cp-async-pipeline]
    for (int j = 0; j < n_tiles; ++j) {
        const int n0 = j * BN, stage = j & 1;
        if (j + 1 < n_tiles) {  // prefetch tile j+1 into the other stage (freed by the sync ending j-1)
            const int n1 = n0 + BN, s1 = stage ^ 1;
            attn::load_tile_async<BN, HD, NTHREADS>(sK + s1 * BN * HD, k_base + n1 * k_ss, k_ss, seqlen_k - n1, tid);
            attn::load_tile_async<BN, HD, NTHREADS>(sV + s1 * BN * HD, v_base + n1 * v_ss, v_ss, seqlen_k - n1, tid);
            attn::cp_async_commit();
            attn::cp_async_wait<1>();  // everything but the prefetch has landed
        } else {
            attn::cp_async_wait<0>();
        }
        __syncthreads();
    // --8<-- [end:cp-async-pipeline]

        if (j == 0) {  // this warp's 16 rows of Q, once, into registers
#pragma unroll
            for (int kk = 0; kk < KT; ++kk) {
                int r = warp * 16 + (lane & 15), c = kk * 16 + (lane >> 4) * 8;
                attn::ldmatrix_x4(q_frag[kk], attn::smem_addr(sQ + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
            }
        }

        // ---- S = Q K^T (16 x BN per warp) ----
        const T* k_s = sK + stage * BN * HD;
        float s[NS][4];
#pragma unroll
        for (int i = 0; i < NS; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
#pragma unroll
            for (int np = 0; np < NS / 2; ++np) {
                // K is stored [key][d], which is B = K^T in the column-major form mma wants: no transpose.
                // Tiles: (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15).
                int mi = lane >> 3;
                int r = np * 16 + (lane & 7) + 8 * (mi >> 1), c = kk * 16 + 8 * (mi & 1);
                unsigned f[4];
                attn::ldmatrix_x4(f, attn::smem_addr(k_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                const unsigned b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
                attn::mma_16816<T>(s[2 * np], q_frag[kk], b0);
                attn::mma_16816<T>(s[2 * np + 1], q_frag[kk], b1);
            }
        }

        // --8<-- [start:online-softmax]
        // ---- scale, mask, online softmax ----
        const bool ragged = n0 + BN > seqlen_k;
        const bool crosses = CAUSAL && n0 + BN - 1 > m0 + warp * 16 + diag;  // some key beyond some row's limit
#pragma unroll
        for (int nt = 0; nt < NS; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float x = s[nt][e] * scale_log2;
                if (ragged || crosses) {
                    int key = n0 + nt * 8 + 2 * t + (e & 1);
                    int row = m0 + warp * 16 + g + 8 * (e >> 1);
                    if (key >= seqlen_k || (CAUSAL && key > row + diag)) x = ATTN_NEG_INF;
                }
                s[nt][e] = x;
            }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = ATTN_NEG_INF;
#pragma unroll
            for (int nt = 0; nt < NS; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
            mx = attn::quad_max(mx);  // the 4 lanes of a quad hold the row's BN scores between them
            const float m_new = fmaxf(row_max[r], mx);
            // A row that has seen only masked keys keeps m = -inf; subtracting 0 instead avoids inf - inf.
            const float m_use = m_new == ATTN_NEG_INF ? 0.f : m_new;
            const float alpha = attn::fast_exp2(row_max[r] - m_use);  // rescales what was accumulated so far
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < NS; ++nt) {
                s[nt][2 * r] = attn::fast_exp2(s[nt][2 * r] - m_use);
                s[nt][2 * r + 1] = attn::fast_exp2(s[nt][2 * r + 1] - m_use);
                sum += s[nt][2 * r] + s[nt][2 * r + 1];
            }
            row_sum[r] = row_sum[r] * alpha + sum;  // per-lane partial; the quad sum waits until the end
            row_max[r] = m_new;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt) {
                acc_o[dt][2 * r] *= alpha;
                acc_o[dt][2 * r + 1] *= alpha;
            }
        }

        // --8<-- [end:online-softmax]
        // ---- O += P V ----
        const T* v_s = sV + stage * BN * HD;
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            const unsigned p[4] = {attn::pack2<T>(s[2 * kk][0], s[2 * kk][1]), attn::pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                   attn::pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   attn::pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                // V is stored [key][d] = [k][n]; .trans delivers the column-major B fragment.
                // Tiles: (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15).
                int mi = lane >> 3;
                int r = kk * 16 + (lane & 7) + 8 * (mi & 1), c = dp * 16 + 8 * (mi >> 1);
                unsigned f[4];
                attn::ldmatrix_x4_trans(f, attn::smem_addr(v_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                const unsigned b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
                attn::mma_16816<T>(acc_o[2 * dp], p, b0);
                attn::mma_16816<T>(acc_o[2 * dp + 1], p, b1);
            }
        }
        __syncthreads();  // all warps are done with this stage before iteration j+1 refills it
    }

    // ---- epilogue: normalise, stage O through shared memory (this warp's own rows of sQ), store ----
    constexpr float LN2 = 0.69314718055994531f;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float l = attn::quad_sum(row_sum[r]);
        const float inv = l > 0.f ? 1.f / l : 0.f;
        const int row = m0 + warp * 16 + g + 8 * r;
        if (t == 0 && row < seqlen_q) lse_base[row] = l > 0.f ? (row_max[r] + __log2f(l)) * LN2 : ATTN_INF;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
            const int sr = warp * 16 + g + 8 * r, c = dt * 8 + 2 * t;
            *reinterpret_cast<unsigned*>(sQ + attn::swz<HD>(sr, c)) =
                attn::pack2<T>(acc_o[dt][2 * r] * inv, acc_o[dt][2 * r + 1] * inv);
        }
    }
    __syncwarp();
    constexpr int CHUNKS = 16 * HD / 8;  // 16-byte chunks in this warp's 16 rows
#pragma unroll
    for (int i = lane; i < CHUNKS; i += 32) {
        const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
        const int row = m0 + warp * 16 + r;
        if (row < seqlen_q)
            *reinterpret_cast<uint4*>(o_base + row * o_ss + c) = *reinterpret_cast<const uint4*>(sQ + attn::swz<HD>(warp * 16 + r, c));
    }
}

// ======================================================================================================
// flash_fwd_mma_wide: the same algorithm, re-tiled for throughput. What changes against flash_fwd_mma:
//
// * Each warp owns MT m16 tiles (16 * MT query rows). Every K or V fragment a warp reads by ldmatrix now
//   feeds MT mma instead of one, which divides the shared-memory traffic per mma by MT; with 16 rows per
//   warp that traffic (one ldmatrix.x4 per two mma) is what bounds the simple kernel on Hopper.
// * Q is not held in registers: its fragments are re-read from (swizzled) shared memory at every k16 step.
//   That frees 8 * HD / 16 * MT registers for the larger O and S accumulators and removes the spills.
// * K and V travel in separate cp.async groups, both double-buffered: tile j+1 of K is requested right
//   after the barrier that opens iteration j and lands while S = Q K_j^T and the softmax run; V_{j+1}
//   is requested after the second barrier and lands during P V_j and the next Q K^T.
// * The scale is folded into the exponent: scores stay raw, the running max is kept in log2 units and
//   p = exp2(s * scale * log2 e - m) is one FFMA and one MUFU.EX2 per element.
// * Masking is decided per tile, not per element: the first n_full tiles (all but the causal diagonal and
//   the ragged last tile) take one uniform branch around the mask and never compare a key with a row.
// * Lazy rescaling: a row keeps its running max until a tile's max exceeds it by more than
//   rescale_slack (log2 units). Until then alpha is exactly 1, and the O rescale (32 FMUL per thread for
//   each half of a 16-row tile at hd128) is skipped when none of the 8 rows of that half moved (one warp
//   vote each). Any max gives the same result (m cancels between O and the row sum, and lse uses the max
//   that was used); a stale one only lets p reach 2^rescale_slack instead of 1, far inside fp16/bf16
//   range and fp32 sums. Past the first few tiles a row's max rarely moves by that much, so almost every
//   tile skips the rescale. rescale_slack = -inf makes every row grow at every tile: the same code
//   (vote included) rescaling always, the ablation's "before". The causal instantiations rescale always
//   without the vote: with it, the 48-key one spills past 255 registers.
//
// Pipeline invariant: groups are committed in the order (Q, K_0), V_0, K_1, V_1, ...; "wait until at
// most one group is pending" before Q K_j^T means K_j (and Q) have landed, and the same wait before
// P V_j means V_j has. The barrier that follows each wait also proves that every warp has finished the
// previous iteration, so the other stage may be overwritten.
// ======================================================================================================
template <typename T, int HD, int BN, int NWARPS, int MT, int MINB, bool CAUSAL>
__global__ void __launch_bounds__(NWARPS * 32, MINB) flash_fwd_mma_wide(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
    float* __restrict__ lse, int seqlen_q, int seqlen_k, int heads_q, int group,
    long long q_sb, long long q_ss, long long q_sh, long long k_sb, long long k_ss, long long k_sh,
    long long v_sb, long long v_ss, long long v_sh, long long o_sb, long long o_ss, long long o_sh,
    float scale_log2, int heads_first, float rescale_slack) {
    constexpr int WROWS = 16 * MT;            // query rows per warp
    constexpr int BM = WROWS * NWARPS, NTHREADS = NWARPS * 32;
    constexpr int KT = HD / 16;  // k16 steps of Q K^T
    constexpr int NS = BN / 8;   // n8 tiles of S
    constexpr int DT = HD / 8;   // n8 tiles of O

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* sQ = reinterpret_cast<T*>(smem_raw);  // [BM][HD]; reused to stage O at the end
    T* sK = sQ + BM * HD;                    // [2][BN][HD]
    T* sV = sK + 2 * BN * HD;                // [2][BN][HD]

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int g = lane >> 2, t = lane & 3;
    const bool hf = CAUSAL && heads_first;  // the grid's order: see the top of this file
    const int m_block = !CAUSAL ? blockIdx.x : hf ? gridDim.y - 1 - blockIdx.y : gridDim.x - 1 - blockIdx.x;
    const int h = hf ? blockIdx.x : blockIdx.y, b = blockIdx.z, hk = h / group;
    const int m0 = m_block * BM;
    const int w0 = warp * WROWS;  // this warp's first row inside the block
    const int diag = seqlen_k - seqlen_q;
    // Each thread's cp.async offsets into K and V are loop invariant, so ptxas keeps them live through the
    // loop; with 64 keys at hd128, 32 rows a warp and the lazy vote that spills 12 bytes. There the loads take
    // threadIdx.x read afresh, and the offsets are recomputed per tile instead (an S2R and a few integer
    // ops). Every other instantiation keeps the code it was measured with.
    constexpr bool RECOMPUTE_OFFSETS = !CAUSAL && HD == 128 && BN >= 64 && MT == 2;

    const T* q_base = q + b * q_sb + h * q_sh + (long long)m0 * q_ss;
    const T* k_base = k + b * k_sb + hk * k_sh;
    const T* v_base = v + b * v_sb + hk * v_sh;
    T* o_base = o + b * o_sb + h * o_sh;
    float* lse_base = lse + ((long long)b * heads_q + h) * seqlen_q;

    int n_end = seqlen_k;
    if (CAUSAL) n_end = min(seqlen_k, m0 + BM + diag);
    const int n_tiles = n_end > 0 ? (n_end + BN - 1) / BN : 0;
    // Tiles no mask touches: fully inside seqlen_k, and (causal) every key <= the block's first row + diag.
    int n_full = seqlen_k / BN;
    if (CAUSAL) n_full = min(n_full, max(0, m0 + diag + 1) / BN);
    n_full = min(n_full, n_tiles);

    float row_max[MT][2], row_sum[MT][2];
    float acc_o[MT][DT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        row_max[mt][0] = row_max[mt][1] = ATTN_NEG_INF;
        row_sum[mt][0] = row_sum[mt][1] = 0.f;
#pragma unroll
        for (int i = 0; i < DT; ++i) acc_o[mt][i][0] = acc_o[mt][i][1] = acc_o[mt][i][2] = acc_o[mt][i][3] = 0.f;
    }

    if (n_tiles > 0) {
        attn::load_tile_async<BM, HD, NTHREADS>(sQ, q_base, q_ss, seqlen_q - m0, tid);
        attn::load_tile_async<BN, HD, NTHREADS>(sK, k_base, k_ss, seqlen_k, tid);
        attn::cp_async_commit();
        attn::load_tile_async<BN, HD, NTHREADS>(sV, v_base, v_ss, seqlen_k, tid);
        attn::cp_async_commit();
    }

    for (int j = 0; j < n_tiles; ++j) {
        const int n0 = j * BN, stage = j & 1;
        const bool more = j + 1 < n_tiles;

        attn::cp_async_wait<1>();  // K_j (and Q) landed; only V_j may still be in flight
        __syncthreads();
        if (more) {
            const int n1 = n0 + BN;
            attn::load_tile_async<BN, HD, NTHREADS>(sK + (stage ^ 1) * BN * HD, k_base + n1 * k_ss, k_ss,
                                                    seqlen_k - n1, RECOMPUTE_OFFSETS ? attn::fresh_tid() : tid);
        }
        attn::cp_async_commit();  // possibly empty: keeps the group count of the invariant

        // ---- S = Q K^T (WROWS x BN per warp), raw scores ----
        const T* k_s = sK + stage * BN * HD;
        float s[MT][NS][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int i = 0; i < NS; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KT; ++kk) {
            unsigned qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int r = w0 + mt * 16 + (lane & 15), c = kk * 16 + (lane >> 4) * 8;
                attn::ldmatrix_x4(qa[mt], attn::smem_addr(sQ + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
            }
#pragma unroll
            for (int np = 0; np < NS / 2; ++np) {
                // Tiles: (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15).
                const int mi = lane >> 3;
                const int r = np * 16 + (lane & 7) + 8 * (mi >> 1), c = kk * 16 + 8 * (mi & 1);
                unsigned f[4];
                attn::ldmatrix_x4(f, attn::smem_addr(k_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                const unsigned b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    attn::mma_16816<T>(s[mt][2 * np], qa[mt], b0);
                    attn::mma_16816<T>(s[mt][2 * np + 1], qa[mt], b1);
                }
            }
        }

        // ---- mask (diagonal / ragged tiles only), online softmax in log2 units ----
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            if (j >= n_full) {  // uniform over the block: the n_full tiles before it skip the mask entirely
#pragma unroll
                for (int nt = 0; nt < NS; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int key = n0 + nt * 8 + 2 * t + (e & 1);
                        const int row = m0 + w0 + mt * 16 + g + 8 * (e >> 1);
                        if (key >= seqlen_k || (CAUSAL && key > row + diag)) s[mt][nt][e] = ATTN_NEG_INF;
                    }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float mx = ATTN_NEG_INF;
#pragma unroll
                for (int nt = 0; nt < NS; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
                mx = attn::quad_max(mx) * scale_log2;  // scale > 0 (the host checks): max commutes with it
                // The difference, not row_max + slack (which rounds by up to 8 itself once |max| >= 2^27):
                // a row's first visible key gives +inf and sets its max, a row that saw nothing yet NaN (no
                // growth). Causal instantiations rescale every tile: the vote spills their 255 registers.
                const bool grow = CAUSAL || mx - row_max[mt][r] > rescale_slack;
                const bool rescale = CAUSAL || __any_sync(0xffffffffu, grow);  // the 8 rows g: uniform branch
                const float m_new = grow ? fmaxf(row_max[mt][r], mx) : row_max[mt][r];
                const float m_use = m_new == ATTN_NEG_INF ? 0.f : m_new;  // fully masked so far: avoid inf - inf
                const float alpha = grow ? attn::fast_exp2(row_max[mt][r] - m_use) : 1.f;
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < NS; ++nt) {
                    s[mt][nt][2 * r] = attn::fast_exp2(fmaf(s[mt][nt][2 * r], scale_log2, -m_use));
                    s[mt][nt][2 * r + 1] = attn::fast_exp2(fmaf(s[mt][nt][2 * r + 1], scale_log2, -m_use));
                    sum += s[mt][nt][2 * r] + s[mt][nt][2 * r + 1];
                }
                row_sum[mt][r] = row_sum[mt][r] * alpha + sum;
                row_max[mt][r] = m_new;
                if (rescale) {
#pragma unroll
                    for (int dt = 0; dt < DT; ++dt) {
                        acc_o[mt][dt][2 * r] *= alpha;
                        acc_o[mt][dt][2 * r + 1] *= alpha;
                    }
                }
            }
        }

        attn::cp_async_wait<1>();  // V_j landed; only K_{j+1} may still be in flight
        __syncthreads();
        if (more) {
            const int n1 = n0 + BN;
            attn::load_tile_async<BN, HD, NTHREADS>(sV + (stage ^ 1) * BN * HD, v_base + n1 * v_ss, v_ss,
                                                    seqlen_k - n1, RECOMPUTE_OFFSETS ? attn::fresh_tid() : tid);
        }
        attn::cp_async_commit();

        // ---- O += P V ----
        const T* v_s = sV + stage * BN * HD;
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            unsigned p[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                p[mt][0] = attn::pack2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                p[mt][1] = attn::pack2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                p[mt][2] = attn::pack2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                p[mt][3] = attn::pack2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < DT / 2; ++dp) {
                // Tiles: (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15).
                const int mi = lane >> 3;
                const int r = kk * 16 + (lane & 7) + 8 * (mi & 1), c = dp * 16 + 8 * (mi >> 1);
                unsigned f[4];
                attn::ldmatrix_x4_trans(f, attn::smem_addr(v_s + attn::swz_chunk<HD>(r, c >> 3, lane & 7)));
                const unsigned b0[2] = {f[0], f[1]}, b1[2] = {f[2], f[3]};
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    attn::mma_16816<T>(acc_o[mt][2 * dp], p[mt], b0);
                    attn::mma_16816<T>(acc_o[mt][2 * dp + 1], p[mt], b1);
                }
            }
        }
    }
    attn::cp_async_wait<0>();  // only empty groups can remain; nothing may be in flight at exit

    // ---- epilogue: normalise, stage O through this warp's own rows of sQ, store 16-byte chunks ----
    constexpr float LN2 = 0.69314718055994531f;
    __syncwarp();  // every lane of this warp is done reading its Q rows before they are overwritten
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float l = attn::quad_sum(row_sum[mt][r]);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int sr = w0 + mt * 16 + g + 8 * r, row = m0 + sr;
            if (t == 0 && row < seqlen_q) lse_base[row] = l > 0.f ? (row_max[mt][r] + __log2f(l)) * LN2 : ATTN_INF;
#pragma unroll
            for (int dt = 0; dt < DT; ++dt) {
                const int c = dt * 8 + 2 * t;
                *reinterpret_cast<unsigned*>(sQ + attn::swz<HD>(sr, c)) =
                    attn::pack2<T>(acc_o[mt][dt][2 * r] * inv, acc_o[mt][dt][2 * r + 1] * inv);
            }
        }
    __syncwarp();
    constexpr int CHUNKS = WROWS * HD / 8;  // 16-byte chunks in this warp's rows
#pragma unroll
    for (int i = lane; i < CHUNKS; i += 32) {
        const int r = i / (HD / 8), c = (i % (HD / 8)) * 8;
        const int row = m0 + w0 + r;
        if (row < seqlen_q)
            *reinterpret_cast<uint4*>(o_base + row * o_ss + c) =
                *reinterpret_cast<const uint4*>(sQ + attn::swz<HD>(w0 + r, c));
    }
}
