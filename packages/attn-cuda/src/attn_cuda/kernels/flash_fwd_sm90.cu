// FlashAttention forward for Hopper (sm_90a): TMA loads into swizzled shared memory, wgmma on the tensor
// cores, one producer and two consumer warpgroups. The plainest form of FlashAttention-3's structure, as a
// first step from the mma.sync kernels (flash_fwd.cu) towards it: no ping-pong between the consumers and
// no softmax overlapped with a GEMM yet.
//
// A block owns 128 query rows of one (batch, head) and walks that head's keys in blocks of 128, left to
// right, through a two-stage ring of K and V tiles. 384 threads:
//
// * warpgroup 0, the producer: one thread issues the TMA loads (Q once; K_j and V_j per key block, each
//   as head_dim / 64 boxes of 128 rows x 64 elements, swizzled by 128 bytes). A stage has three
//   mbarriers: K full, V full (TMA counts the bytes in) and empty (the 256 consumer threads arrive when
//   they are done with it). The warpgroup gives most of its registers to the consumers (setmaxnreg).
// * warpgroups 1 and 2, the consumers: 64 query rows each. Per key block: S = Q K_j^T (wgmma, both
//   operands in shared memory, K-major), the online softmax on S in registers (base 2, the scale folded
//   into log2 e), then O += P V_j (wgmma with P from registers: the accumulator layout of S is the A
//   operand layout, two n8 column blocks per k16 step; V_j read MN-major by the transpose-B flag).
//
// Rows past seqlen_q and keys past seqlen_k are zero-filled by TMA (the tensor maps end at the sequence
// lengths, so nothing beyond them is read); such keys are masked, such rows never stored. Causal masking
// is aligned at the bottom right (query i sees key j iff j <= i + seqlen_k - seqlen_q); key blocks entirely
// above the diagonal are never loaded, and only blocks crossing it or the seqlen_k edge pay for the mask.
// GQA/MQA: query head h reads KV head h / group. Output: O (batch, seqlen_q, heads, d) and the logsumexp
// (batch, heads, seqlen_q) in natural log; rows that see no key give O = 0, lse = +inf.
#include "sm90.cuh"

namespace {

constexpr int BM = 128;                 // query rows a block
constexpr int BN = 128;                 // keys a block
constexpr int STAGES = 2;               // K/V ring
constexpr int THREADS = 384;            // producer + two consumer warpgroups
constexpr int CONSUMER_THREADS = 256;
constexpr int ROW_BYTES = 128;          // one row of a column block: 64 16-bit elements
constexpr int BLOCK_BYTES = 128 * ROW_BYTES;  // one column block of a 128-row tile: 16 KB

}  // namespace

template <typename T, int HD, bool CAUSAL>
__global__ void __launch_bounds__(THREADS, 1) flash_fwd_sm90(
    const unsigned char* __restrict__ maps,  // three 128-byte CUtensorMaps: q, k, v (64 x 128 boxes)
    T* __restrict__ o, float* __restrict__ lse, int seqlen_q, int seqlen_k, int heads_q, int group,
    long long o_sb, long long o_ss, long long o_sh, float scale_log2) {
    using namespace attn::sm90;
    constexpr int CB = HD / 64;                  // column blocks of a row
    constexpr int TILE_BYTES = CB * BLOCK_BYTES;  // a 128-row tile of Q, K or V
    constexpr int OD = HD / 8;                   // n8 column blocks of O

    extern __shared__ unsigned char smem_raw[];
    // The driver aligns dynamic shared memory to 128 bytes; the swizzle needs 1024 (the launch asks for
    // 1 KB more than the tiles take).
    const unsigned base = (smem_addr(smem_raw) + 1023u) & ~1023u;
    const unsigned sQ = base;
    const unsigned sK = sQ + TILE_BYTES;               // [STAGES] tiles
    const unsigned sV = sK + STAGES * TILE_BYTES;      // [STAGES] tiles
    const unsigned bar_q = sV + STAGES * TILE_BYTES;   // 8-byte mbarriers from here
    const unsigned bar_k = bar_q + 8;                  // [STAGES]
    const unsigned bar_v = bar_k + 8 * STAGES;         // [STAGES]
    const unsigned bar_empty = bar_v + 8 * STAGES;     // [STAGES]

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    // Causal: the last query blocks see the most keys; launch them first.
    const int m_block = CAUSAL ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kv_h = h / group;
    const int m0 = m_block * BM;
    const int shift = seqlen_k - seqlen_q;
    int col_end = seqlen_k;  // keys [0, col_end) are visible to some row of this block
    if (CAUSAL) col_end = min(seqlen_k, max(0, m0 + BM + shift));
    const int n_blocks = (col_end + BN - 1) / BN;

    if (tid == 0) {
        mbar_init(bar_q, 1);
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(bar_k + 8 * s, 1);
            mbar_init(bar_v + 8 * s, 1);
            mbar_init(bar_empty + 8 * s, CONSUMER_THREADS);
        }
        mbar_fence_init();
    }
    __syncthreads();

    if (warp < 4) {
        // ------------------------------------------------------------------------------ producer
        setmaxnreg_dec<24>();
        if (tid == 0 && n_blocks > 0) {
            const unsigned char *map_q = maps, *map_k = maps + 128, *map_v = maps + 256;
            tensormap_acquire(map_q);
            tensormap_acquire(map_k);
            tensormap_acquire(map_v);
            mbar_arrive_expect_tx(bar_q, TILE_BYTES);
            for (int c = 0; c < CB; ++c) tma_load_4d(sQ + c * BLOCK_BYTES, map_q, bar_q, 64 * c, m0, h, b);
            for (int i = 0; i < n_blocks; ++i) {
                const int s = i % STAGES;
                // the (i / STAGES)-th reuse of stage s waits for the consumers to release its last use
                if (i >= STAGES) mbar_wait(bar_empty + 8 * s, ((i / STAGES) & 1) ^ 1);
                const unsigned k_dst = sK + s * TILE_BYTES, v_dst = sV + s * TILE_BYTES;
                mbar_arrive_expect_tx(bar_k + 8 * s, TILE_BYTES);
                for (int c = 0; c < CB; ++c)
                    tma_load_4d(k_dst + c * BLOCK_BYTES, map_k, bar_k + 8 * s, 64 * c, i * BN, kv_h, b);
                mbar_arrive_expect_tx(bar_v + 8 * s, TILE_BYTES);
                for (int c = 0; c < CB; ++c)
                    tma_load_4d(v_dst + c * BLOCK_BYTES, map_v, bar_v + 8 * s, 64 * c, i * BN, kv_h, b);
            }
        }
        return;
    }

    // ---------------------------------------------------------------------------------- consumers
    setmaxnreg_inc<240>();
    const int wg = warp / 4 - 1;           // consumer warpgroup: rows 64 * wg.. of the block
    const int g = lane >> 2, t = lane & 3;
    const int row_a = m0 + 64 * wg + 16 * (warp % 4) + g, row_b = row_a + 8;  // this thread's two rows

    float acc_o[HD / 2];
#pragma unroll
    for (int i = 0; i < HD / 2; ++i) acc_o[i] = 0.f;
    float m_a = ATTN_NEG_INF, m_b = ATTN_NEG_INF, l_a = 0.f, l_b = 0.f;  // running max (log2 units), sum

    if (n_blocks > 0) mbar_wait(bar_q, 0);
    for (int i = 0; i < n_blocks; ++i) {
        const int s = i % STAGES;
        const unsigned parity = (i / STAGES) & 1;
        const int n0 = i * BN;

        // S = Q K_j^T: HD / 16 k steps, each a 32-byte step along the swizzled rows of one column block.
        float acc_s[BN / 2];
        mbar_wait(bar_k + 8 * s, parity);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            const unsigned col = (kk / 4) * BLOCK_BYTES + (kk % 4) * 32;
            const unsigned a = sQ + col + 64 * wg * ROW_BYTES;  // this warpgroup's 64 rows
            const unsigned bk = sK + s * TILE_BYTES + col;
            wgmma_ss<T, BN>(acc_s, smem_desc(a, 16, 1024), smem_desc(bk, 16, 1024), kk > 0);
        }
        wgmma_commit();
        wgmma_wait<0>();

        // Online softmax. acc_s[4j + v]: row (v < 2 ? row_a : row_b), key n0 + 8j + 2t + (v & 1).
        const bool masked = n0 + BN > seqlen_k || (CAUSAL && n0 + BN - 1 > m0 + shift);
        float mx_a = ATTN_NEG_INF, mx_b = ATTN_NEG_INF;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
            for (int v = 0; v < 4; ++v) {
                float x = acc_s[4 * j + v] * scale_log2;
                if (masked) {
                    const int key = n0 + 8 * j + 2 * t + (v & 1);
                    const int row = v < 2 ? row_a : row_b;
                    if (key >= seqlen_k || (CAUSAL && key > row + shift)) x = ATTN_NEG_INF;
                }
                acc_s[4 * j + v] = x;
                if (v < 2) mx_a = fmaxf(mx_a, x);
                else mx_b = fmaxf(mx_b, x);
            }
        }
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
        const float new_a = fmaxf(m_a, mx_a), new_b = fmaxf(m_b, mx_b);
        // A row that has seen only masked keys keeps max -inf; subtracting 0 instead avoids inf - inf.
        const float use_a = new_a == ATTN_NEG_INF ? 0.f : new_a, use_b = new_b == ATTN_NEG_INF ? 0.f : new_b;
        const float alpha_a = exp2_approx(m_a - use_a), alpha_b = exp2_approx(m_b - use_b);
        m_a = new_a;
        m_b = new_b;
        float sum_a = 0.f, sum_b = 0.f;
        unsigned p[BN / 16][4];  // P as the A operand: k16 step kk holds column blocks 2kk and 2kk + 1
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
            const float p0 = exp2_approx(acc_s[4 * j] - use_a), p1 = exp2_approx(acc_s[4 * j + 1] - use_a);
            const float p2 = exp2_approx(acc_s[4 * j + 2] - use_b), p3 = exp2_approx(acc_s[4 * j + 3] - use_b);
            sum_a += p0 + p1;
            sum_b += p2 + p3;
            p[j / 2][2 * (j % 2)] = attn::pack2<T>(p0, p1);
            p[j / 2][2 * (j % 2) + 1] = attn::pack2<T>(p2, p3);
        }
        l_a = l_a * alpha_a + sum_a;
        l_b = l_b * alpha_b + sum_b;
#pragma unroll
        for (int j = 0; j < OD; ++j) {
            acc_o[4 * j] *= alpha_a;
            acc_o[4 * j + 1] *= alpha_a;
            acc_o[4 * j + 2] *= alpha_b;
            acc_o[4 * j + 3] *= alpha_b;
        }

        // O += P V_j: BN / 16 k steps of 16 keys, each 16 rows (2048 bytes) further down the V tile.
        mbar_wait(bar_v + 8 * s, parity);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            const unsigned bv = sV + s * TILE_BYTES + kk * 16 * ROW_BYTES;
            wgmma_rs_mn<T, HD>(acc_o, p[kk], smem_desc(bv, BLOCK_BYTES, 1024));
        }
        wgmma_commit();
        wgmma_wait<0>();
        mbar_arrive(bar_empty + 8 * s);
    }

    // The row sums are spread over the quad's four lanes.
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float inv_a = l_a > 0.f ? 1.f / l_a : 0.f, inv_b = l_b > 0.f ? 1.f / l_b : 0.f;
    constexpr float LN2 = 0.6931471805599453f;
    T* o_head = o + b * o_sb + h * o_sh;
#pragma unroll
    for (int j = 0; j < OD; ++j) {
        const int col = 8 * j + 2 * t;
        if (row_a < seqlen_q)
            *reinterpret_cast<unsigned*>(o_head + row_a * o_ss + col) =
                attn::pack2<T>(acc_o[4 * j] * inv_a, acc_o[4 * j + 1] * inv_a);
        if (row_b < seqlen_q)
            *reinterpret_cast<unsigned*>(o_head + row_b * o_ss + col) =
                attn::pack2<T>(acc_o[4 * j + 2] * inv_b, acc_o[4 * j + 3] * inv_b);
    }
    if (t == 0) {
        float* lse_head = lse + (static_cast<long long>(b) * heads_q + h) * seqlen_q;
        if (row_a < seqlen_q) lse_head[row_a] = l_a > 0.f ? (m_a + log2f(l_a)) * LN2 : ATTN_INF;
        if (row_b < seqlen_q) lse_head[row_b] = l_b > 0.f ? (m_b + log2f(l_b)) * LN2 : ATTN_INF;
    }
}
