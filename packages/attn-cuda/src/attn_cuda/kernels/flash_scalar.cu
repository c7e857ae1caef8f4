// FlashAttention-1 and -2 forward with plain fp32 arithmetic: the algorithms without the tensor-core
// machinery, one thread per query row. Slow on purpose-built hardware, but every line maps to a line of
// the papers; read these before flash_fwd.cu.
//
// Both compute O = softmax(scale * Q K^T) V tile by tile without ever forming the seqlen_q x seqlen_k
// score matrix; they differ in the loop order, which is the whole point of FlashAttention-2:
//
//   FA-1 (flash_fwd_scalar_v1): the OUTER loop walks K/V tiles, the inner loop walks query rows. A K/V
//        tile is loaded once, but every query row's running (O, m, l) must go back to global memory
//        after each tile and be read again for the next: O is read and written seqlen_k / BN times.
//        Here one block owns a whole (batch, head), so the "global" state is a fp32 workspace.
//   FA-2 (flash_fwd_scalar_v2): the OUTER loop walks query rows (one block per tile of rows, so blocks
//        are independent and fill the GPU), the inner loop walks K/V tiles. (O, m, l) stay in registers
//        for the whole sweep and O is normalised once at the end, not after every tile.
//
// Conventions match the tensor-core kernel: bottom-right causal mask (key j visible to query i iff
// j <= i + seqlen_k - seqlen_q), GQA through head / group, lse in natural log (+inf for empty rows).
#include "common.cuh"

using attn::from_float;
using attn::to_float;

template <typename T, int HD, int BM, int BN, bool CAUSAL>
__global__ void __launch_bounds__(BM) flash_fwd_scalar_v2(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
    float* __restrict__ lse, int seqlen_q, int seqlen_k, int heads_q, int group,
    long long q_sb, long long q_ss, long long q_sh, long long k_sb, long long k_ss, long long k_sh,
    long long v_sb, long long v_ss, long long v_sh, long long o_sb, long long o_ss, long long o_sh, float scale) {
    __shared__ float sK[BN][HD], sV[BN][HD];
    const int h = blockIdx.y, b = blockIdx.z, hk = h / group;
    const int row = blockIdx.x * BM + threadIdx.x;
    const bool active = row < seqlen_q;
    const int diag = seqlen_k - seqlen_q;

    float qr[HD], acc[HD];
    float m = ATTN_NEG_INF, l = 0.f;  // running max and running sum of exp(s - m)
    const T* qp = q + b * q_sb + h * q_sh + (long long)(active ? row : 0) * q_ss;
#pragma unroll
    for (int d = 0; d < HD; ++d) {
        qr[d] = active ? to_float(qp[d]) * scale : 0.f;  // fold the scale into q once
        acc[d] = 0.f;
    }
    // Keys this block needs: all of them, or up to the last row's diagonal when causal.
    int n_end = seqlen_k;
    if (CAUSAL) n_end = min(seqlen_k, (blockIdx.x + 1) * BM + diag);
    for (int n0 = 0; n0 < n_end; n0 += BN) {
        __syncthreads();  // the previous tile is no longer in use
        for (int i = threadIdx.x; i < BN * HD; i += BM) {  // cooperative, coalesced tile load
            int r = i / HD, d = i % HD, key = n0 + r;
            bool ok = key < seqlen_k;
            sK[r][d] = ok ? to_float(k[b * k_sb + hk * k_sh + (long long)key * k_ss + d]) : 0.f;
            sV[r][d] = ok ? to_float(v[b * v_sb + hk * v_sh + (long long)key * v_ss + d]) : 0.f;
        }
        __syncthreads();
        if (!active) continue;
        for (int r = 0; r < BN; ++r) {
            int key = n0 + r;
            if (key >= seqlen_k || (CAUSAL && key > row + diag)) break;  // keys only grow along the tile
            float s = 0.f;
#pragma unroll
            for (int d = 0; d < HD; ++d) s += qr[d] * sK[r][d];
            float m_new = fmaxf(m, s);
            float alpha = __expf(m - m_new), p = __expf(s - m_new);  // alpha = 0 on the first key
            l = l * alpha + p;
#pragma unroll
            for (int d = 0; d < HD; ++d) acc[d] = acc[d] * alpha + p * sV[r][d];
            m = m_new;
        }
    }
    if (!active) return;
    float inv = l > 0.f ? 1.f / l : 0.f;
    T* op = o + b * o_sb + h * o_sh + (long long)row * o_ss;
#pragma unroll
    for (int d = 0; d < HD; ++d) op[d] = from_float<T>(acc[d] * inv);
    lse[((long long)b * heads_q + h) * seqlen_q + row] = l > 0.f ? m + __logf(l) : ATTN_INF;
}

// FA-1: one block per (batch, head); o_ws (fp32, batch x heads x seqlen_q x HD) and ml_ws (m and l per
// row) hold the running state between K/V tiles, as HBM does in the paper's Algorithm 1.
template <typename T, int HD, int BM, int BN, bool CAUSAL>
__global__ void __launch_bounds__(BM) flash_fwd_scalar_v1(
    const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ o,
    float* __restrict__ lse, float* __restrict__ o_ws, float* __restrict__ ml_ws, int seqlen_q, int seqlen_k,
    int heads_q, int group, long long q_sb, long long q_ss, long long q_sh, long long k_sb, long long k_ss,
    long long k_sh, long long v_sb, long long v_ss, long long v_sh, long long o_sb, long long o_ss, long long o_sh,
    float scale) {
    __shared__ float sK[BN][HD], sV[BN][HD];
    const int h = blockIdx.x, b = blockIdx.y, hk = h / group;
    const int diag = seqlen_k - seqlen_q;
    const long long bh = (long long)b * heads_q + h;
    float* ows = o_ws + bh * seqlen_q * HD;
    float* mws = ml_ws + bh * seqlen_q * 2;

    for (int row = threadIdx.x; row < seqlen_q; row += BM) {  // initialise: O = 0, m = -inf, l = 0
        for (int d = 0; d < HD; ++d) ows[(long long)row * HD + d] = 0.f;
        mws[2 * row] = ATTN_NEG_INF;
        mws[2 * row + 1] = 0.f;
    }
    for (int n0 = 0; n0 < seqlen_k; n0 += BN) {  // outer loop: K/V tiles
        __syncthreads();
        for (int i = threadIdx.x; i < BN * HD; i += BM) {
            int r = i / HD, d = i % HD, key = n0 + r;
            bool ok = key < seqlen_k;
            sK[r][d] = ok ? to_float(k[b * k_sb + hk * k_sh + (long long)key * k_ss + d]) : 0.f;
            sV[r][d] = ok ? to_float(v[b * v_sb + hk * v_sh + (long long)key * v_ss + d]) : 0.f;
        }
        __syncthreads();
        for (int row = threadIdx.x; row < seqlen_q; row += BM) {  // inner loop: query rows
            const T* qp = q + b * q_sb + h * q_sh + (long long)row * q_ss;
            // Scores of this row against the tile, and the tile's own max and sum (m~, l~ in the paper).
            float s[BN];
            float m_t = ATTN_NEG_INF;
            for (int r = 0; r < BN; ++r) {
                int key = n0 + r;
                bool visible = key < seqlen_k && !(CAUSAL && key > row + diag);
                float acc = 0.f;
                if (visible)
                    for (int d = 0; d < HD; ++d) acc += to_float(qp[d]) * sK[r][d];
                s[r] = visible ? acc * scale : ATTN_NEG_INF;
                m_t = fmaxf(m_t, s[r]);
            }
            if (m_t == ATTN_NEG_INF) continue;  // nothing visible in this tile: the state is unchanged
            float l_t = 0.f;
            for (int r = 0; r < BN; ++r) {
                s[r] = __expf(s[r] - m_t);
                l_t += s[r];
            }
            // Merge the tile into the running state, which is read from and written back to memory.
            float m_old = mws[2 * row], l_old = mws[2 * row + 1];
            float m_new = fmaxf(m_old, m_t);
            float a_old = __expf(m_old - m_new), a_t = __expf(m_t - m_new);
            float l_new = l_old * a_old + l_t * a_t;
            for (int d = 0; d < HD; ++d) {
                float pv = 0.f;
                for (int r = 0; r < BN; ++r) pv += s[r] * sV[r][d];
                float* od = ows + (long long)row * HD + d;
                *od = (l_old * a_old * *od + a_t * pv) / l_new;  // O stays normalised after every tile
            }
            mws[2 * row] = m_new;
            mws[2 * row + 1] = l_new;
        }
    }
    __syncthreads();
    for (int row = threadIdx.x; row < seqlen_q; row += BM) {
        float m = mws[2 * row], l = mws[2 * row + 1];
        T* op = o + b * o_sb + h * o_sh + (long long)row * o_ss;
        for (int d = 0; d < HD; ++d) op[d] = from_float<T>(l > 0.f ? ows[(long long)row * HD + d] : 0.f);
        lse[bh * seqlen_q + row] = l > 0.f ? m + __logf(l) : ATTN_INF;
    }
}
