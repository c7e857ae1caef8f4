// FlashAttention forward for Hopper (sm_90a): TMA loads into swizzled shared memory, wgmma on the tensor
// cores, one producer and two consumer warpgroups taking turns at the tensor cores: FlashAttention-3's
// structure in plain CUDA C++, the step after the mma.sync kernels of flash_fwd.cu.
//
// A block owns 128 query rows of one (batch, head) and walks that head's keys in blocks of 128, left to
// right, through a three-stage ring of K and V tiles. 384 threads:
//
// * warpgroup 0, the producer: one thread issues the TMA loads (Q once; K_j and V_j per key block, each
//   as head_dim / 64 boxes of 128 rows x 64 elements, swizzled by 128 bytes). A stage has three
//   mbarriers: K full, V full (TMA counts the bytes in) and empty (the 256 consumer threads arrive when
//   they are done with it). The warpgroup gives most of its registers to the consumers (setmaxnreg).
// * warpgroups 1 and 2, the consumers: 64 query rows each. Step j issues S_j = Q K_j^T (wgmma, both
//   operands in shared memory, K-major) and O += P_{j-1} V_{j-1} (wgmma with P from registers: the
//   accumulator layout of S is the A operand layout, two n8 column blocks per k16 step; V read MN-major by
//   the transpose-B flag) back to back, waits for both, then runs the online softmax of S_j (base 2, the
//   scale folded into log2 e), which gives P_j and the factor O is rescaled by before the next P V.
//   FA3 also overlaps that softmax with the warpgroup's own P V (wait for S_j alone, keep P_j in fp32 until
//   P V is done). Written that way here, ptxas 13 hoists the second wait above the exponentials anyway,
//   at head dim 64 as at 128 and wherever the empty-barrier arrive is put (the wait has no operands to
//   hold it in place; a branch to pin it makes ptxas serialise every wgmma),
//   so the kernel keeps the simpler order: its overlap is the other warpgroup's, by ping-pong.
// * ping-pong (PINGPONG): two named barriers make the consumers take turns issuing their GEMMs, so that one
//   warpgroup's softmax runs while the other's GEMMs keep the tensor cores busy (FA3's schedule).
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
constexpr int STAGES = 3;               // K/V ring: a load has two blocks of compute to land
constexpr int THREADS = 384;            // producer + two consumer warpgroups
constexpr int CONSUMER_THREADS = 256;
constexpr int ROW_BYTES = 128;          // one row of a column block: 64 16-bit elements
constexpr int BLOCK_BYTES = 128 * ROW_BYTES;  // one column block of a 128-row tile: 16 KB
constexpr int TURN = 1;                 // named barriers TURN + w: consumer warpgroup w may issue its GEMMs

// The online softmax of one key block for a thread's two rows (a: row_a, b: row_a + 8). acc_s[4j + v] is
// the score of row (v < 2 ? a : b) and key n0 + 8j + 2t + (v & 1); on return p holds P in 16 bits as the
// A operand of P V (k16 step kk: column blocks 2kk and 2kk + 1), m and l are updated, and alpha is the
// factor the running O must be multiplied by before P V is added.
template <typename T, bool CAUSAL>
ATTN_DEVICE void softmax_step(float (&acc_s)[BN / 2], unsigned (&p)[BN / 16][4], float (&m)[2], float (&l)[2],
                              float (&alpha)[2], int n0, int row_a, int t, int seqlen_k, int shift, bool masked,
                              float scale_log2) {
    using attn::fast_exp2;
    float mx[2] = {ATTN_NEG_INF, ATTN_NEG_INF};
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
        for (int v = 0; v < 4; ++v) {
            float x = acc_s[4 * j + v] * scale_log2;
            if (masked) {
                const int key = n0 + 8 * j + 2 * t + (v & 1);
                const int row = row_a + (v < 2 ? 0 : 8);
                if (key >= seqlen_k || (CAUSAL && key > row + shift)) x = ATTN_NEG_INF;
            }
            acc_s[4 * j + v] = x;
            mx[v / 2] = fmaxf(mx[v / 2], x);
        }
    }
    float use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float m_new = fmaxf(m[r], mx[r]);
        // A row that has seen only masked keys keeps max -inf; subtracting 0 instead avoids inf - inf.
        use[r] = m_new == ATTN_NEG_INF ? 0.f : m_new;
        alpha[r] = fast_exp2(m[r] - use[r]);
        m[r] = m_new;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const float p0 = fast_exp2(acc_s[4 * j] - use[0]), p1 = fast_exp2(acc_s[4 * j + 1] - use[0]);
        const float p2 = fast_exp2(acc_s[4 * j + 2] - use[1]), p3 = fast_exp2(acc_s[4 * j + 3] - use[1]);
        sum[0] += p0 + p1;
        sum[1] += p2 + p3;
        p[j / 2][2 * (j % 2)] = attn::pack2<T>(p0, p1);
        p[j / 2][2 * (j % 2) + 1] = attn::pack2<T>(p2, p3);
    }
    l[0] = l[0] * alpha[0] + sum[0];
    l[1] = l[1] * alpha[1] + sum[1];
}

template <int HD> ATTN_DEVICE void rescale(float (&acc_o)[HD / 2], const float (&alpha)[2]) {
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
        acc_o[4 * j] *= alpha[0];
        acc_o[4 * j + 1] *= alpha[0];
        acc_o[4 * j + 2] *= alpha[1];
        acc_o[4 * j + 3] *= alpha[1];
    }
}

}  // namespace

template <typename T, int HD, bool CAUSAL, bool PINGPONG>
__global__ void __launch_bounds__(THREADS, 1) flash_fwd_sm90(
    const unsigned char* __restrict__ maps,  // three 128-byte CUtensorMaps: q, k, v (64 x 128 boxes)
    T* __restrict__ o, float* __restrict__ lse, int seqlen_q, int seqlen_k, int heads_q, int group,
    long long o_sb, long long o_ss, long long o_sh, float scale_log2) {
    using namespace attn::sm90;
    constexpr int CB = HD / 64;                  // column blocks of a row
    constexpr int TILE_BYTES = CB * BLOCK_BYTES;  // a 128-row tile of Q, K or V

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
            // --8<-- [start:producer]
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
            // --8<-- [end:producer]
        }
        return;
    }

    // ---------------------------------------------------------------------------------- consumers
    setmaxnreg_inc<240>();
    const int wg = warp / 4 - 1;           // consumer warpgroup: rows 64 * wg.. of the block
    const int g = lane >> 2, t = lane & 3;
    const int row_a = m0 + 64 * wg + 16 * (warp % 4) + g, row_b = row_a + 8;  // this thread's two rows
    const int my_turn = TURN + wg, their_turn = TURN + 1 - wg;

    float acc_o[HD / 2];
#pragma unroll
    for (int i = 0; i < HD / 2; ++i) acc_o[i] = 0.f;
    float acc_s[BN / 2];
    unsigned p[BN / 16][4];  // P_{j-1}, the A operand of the P V in flight beside S_j
    float m[2] = {ATTN_NEG_INF, ATTN_NEG_INF}, l[2] = {0.f, 0.f}, alpha[2];  // running max (log2), sum

    // S_j = Q K_j^T: HD / 16 k steps, each a 32-byte step along the swizzled rows of one column block.
    auto issue_s = [&](int stage) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            const unsigned col = (kk / 4) * BLOCK_BYTES + (kk % 4) * 32;
            const unsigned a = sQ + col + 64 * wg * ROW_BYTES;  // this warpgroup's 64 rows
            const unsigned bk = sK + stage * TILE_BYTES + col;
            wgmma_ss<T, BN>(acc_s, smem_desc(a, 16, 1024), smem_desc(bk, 16, 1024), kk > 0);
        }
        wgmma_commit();
    };
    // O += P V_j: BN / 16 k steps of 16 keys, each 16 rows (2048 bytes) further down the V tile.
    auto issue_pv = [&](int stage) {
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            const unsigned bv = sV + stage * TILE_BYTES + kk * 16 * ROW_BYTES;
            wgmma_rs_mn<T, HD>(acc_o, p[kk], smem_desc(bv, BLOCK_BYTES, 1024));
        }
        wgmma_commit();
    };
    auto masked = [&](int n0) { return n0 + BN > seqlen_k || (CAUSAL && n0 + BN - 1 > m0 + shift); };

    if (n_blocks > 0) {  // uniform over the block: both consumer warpgroups take this branch or neither
        if (PINGPONG && wg == 1) barrier_arrive<CONSUMER_THREADS>(TURN);  // warpgroup 0 goes first
        mbar_wait(bar_q, 0);
        // Prologue: S_0 alone.
        mbar_wait(bar_k, 0);
        if (PINGPONG) barrier_sync<CONSUMER_THREADS>(my_turn);
        wgmma_fence();
        issue_s(0);
        if (PINGPONG) barrier_arrive<CONSUMER_THREADS>(their_turn);
        wgmma_wait<0>();
        pin(acc_s);
        softmax_step<T, CAUSAL>(acc_s, p, m, l, alpha, 0, row_a, t, seqlen_k, shift, masked(0), scale_log2);
        // --8<-- [start:consumer]
        for (int i = 1; i < n_blocks; ++i) {
            const int s = i % STAGES, prev = (i - 1) % STAGES;
            mbar_wait(bar_k + 8 * s, (i / STAGES) & 1);
            mbar_wait(bar_v + 8 * prev, ((i - 1) / STAGES) & 1);
            rescale<HD>(acc_o, alpha);  // O is not in flight: the last P V was waited for
            pin(acc_o);
            pin(p);
            if (PINGPONG) barrier_sync<CONSUMER_THREADS>(my_turn);
            wgmma_fence();
            issue_s(s);
            issue_pv(prev);
            if (PINGPONG) barrier_arrive<CONSUMER_THREADS>(their_turn);
            wgmma_wait<0>();
            pin(acc_s);
            pin(acc_o);
            mbar_arrive(bar_empty + 8 * prev);
            softmax_step<T, CAUSAL>(acc_s, p, m, l, alpha, i * BN, row_a, t, seqlen_k, shift, masked(i * BN),
                                    scale_log2);
        }
        // --8<-- [end:consumer]
        // Epilogue: the last P V.
        const int last = (n_blocks - 1) % STAGES;
        mbar_wait(bar_v + 8 * last, ((n_blocks - 1) / STAGES) & 1);
        rescale<HD>(acc_o, alpha);
        pin(acc_o);
        pin(p);
        if (PINGPONG) barrier_sync<CONSUMER_THREADS>(my_turn);
        wgmma_fence();
        issue_pv(last);
        if (PINGPONG) barrier_arrive<CONSUMER_THREADS>(their_turn);
        wgmma_wait<0>();
        pin(acc_o);
        mbar_arrive(bar_empty + 8 * last);
    }

    // The row sums are spread over the quad's four lanes.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    const float inv_a = l[0] > 0.f ? 1.f / l[0] : 0.f, inv_b = l[1] > 0.f ? 1.f / l[1] : 0.f;
    constexpr float LN2 = 0.6931471805599453f;
    T* o_head = o + b * o_sb + h * o_sh;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
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
        if (row_a < seqlen_q) lse_head[row_a] = l[0] > 0.f ? (m[0] + log2f(l[0])) * LN2 : ATTN_INF;
        if (row_b < seqlen_q) lse_head[row_b] = l[1] > 0.f ? (m[1] + log2f(l[1])) * LN2 : ATTN_INF;
    }
}
