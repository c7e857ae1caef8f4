// What the two tensor-core backward kernels (flash_bwd.cu, flash_bwd_tiled.cu) share: the query tiles a key
// block visits, their Q and dO loads, and the paired dQ atomics.
#pragma once

#include "common.cuh"

namespace attn {

// The steps of one backward block: it owns keys n0.. of KV head hk and visits, for every query head that
// shares that KV head (GQA), the BM-row query tiles from the first whose last row sees one of its keys
// (causal, bottom-right aligned) to the last. Step s is tile s % per_head of head hk * group + s / per_head.
template <int BM, bool CAUSAL> struct BwdSteps {
    int hk, group, m_first, per_head, steps;

    // Written as the kernels first computed it inline: ptxas allocates registers differently for the same
    // arithmetic in another order (a first form of this struct changed the SASS of 80 of the 88 builds of
    // flash_bwd.cu; this one leaves 86 byte-identical).
    ATTN_DEVICE BwdSteps(int n0, int hk_, int group_, int seqlen_q, int diag) : hk(hk_), group(group_) {
        m_first = 0;
        if (CAUSAL) m_first = max(0, n0 - diag) / BM;
        const int m_tiles = (seqlen_q + BM - 1) / BM;
        per_head = max(0, m_tiles - m_first);
        steps = per_head * group;
    }
    ATTN_DEVICE void tile(int step, int& h, int& m0) const {
        h = hk * group + step / per_head;
        m0 = (m_first + step % per_head) * BM;
    }
};

// The BM-row tiles of Q and dO (batch b) that step `step` of `sched` visits, into buffer `stage` of sQ and
// sdO ([2][BM][HD] each) by cp.async; rows past seqlen_q are zero-filled. The caller commits the group.
template <int HD, int NTHREADS, int BM, bool CAUSAL, typename T>
ATTN_DEVICE void load_q_do_async(const BwdSteps<BM, CAUSAL>& sched, int step, int stage, T* sQ, T* sdO, const T* q,
                                 long long q_sb, long long q_sh, long long q_ss, const T* dout, long long do_sb,
                                 long long do_sh, long long do_ss, int b, int seqlen_q, int tid) {
    int h, m0;
    sched.tile(step, h, m0);
    load_tile_async<BM, HD, NTHREADS>(sQ + stage * BM * HD, q + b * q_sb + h * q_sh + (long long)m0 * q_ss, q_ss,
                                      seqlen_q - m0, tid);
    load_tile_async<BM, HD, NTHREADS>(sdO + stage * BM * HD, dout + b * do_sb + h * do_sh + (long long)m0 * do_ss,
                                      do_ss, seqlen_q - m0, tid);
}

// Adds the pair (x, y) to dst[0], dst[1] (8-byte aligned). With PAIR on sm_90 that is one vector atomic
// (atomicAdd on float2, global memory, compute capability 9.x): half the L2 atomic operations of two
// scalar adds. On earlier architectures, or without PAIR, two scalar atomics.
template <bool PAIR> ATTN_DEVICE void atomic_add_pair(float* dst, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if constexpr (PAIR) {
        atomicAdd(reinterpret_cast<float2*>(dst), make_float2(x, y));
        return;
    }
#endif
    atomicAdd(dst, x);
    atomicAdd(dst + 1, y);
}

}  // namespace attn
