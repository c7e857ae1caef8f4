// Row softmax, one block per row: the online softmax of the attention kernels in its smallest form.
//
// Each thread walks its share of the row keeping a running maximum m and a running sum l of exp(x - m);
// when m grows the old sum is rescaled by exp(m_old - m_new). One pass reads the row to get (m, l), a
// second pass writes exp(x - m) / l: two reads and one write instead of three reads and one write.
#include "common.cuh"

template <int NTHREADS>
__device__ __forceinline__ void block_merge(float& m, float& l, float* sm, float* sl) {
    // Merge (m, l) pairs: first across a warp with shuffles, then across warps through shared memory.
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        float mo = __shfl_xor_sync(0xffffffff, m, off), lo = __shfl_xor_sync(0xffffffff, l, off);
        float mn = fmaxf(m, mo);
        l = (mn == ATTN_NEG_INF) ? 0.f : l * __expf(m - mn) + lo * __expf(mo - mn);
        m = mn;
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
    __syncthreads();
    if (warp == 0) {
        m = lane < NTHREADS / 32 ? sm[lane] : ATTN_NEG_INF;
        l = lane < NTHREADS / 32 ? sl[lane] : 0.f;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            float mo = __shfl_xor_sync(0xffffffff, m, off), lo = __shfl_xor_sync(0xffffffff, l, off);
            float mn = fmaxf(m, mo);
            l = (mn == ATTN_NEG_INF) ? 0.f : l * __expf(m - mn) + lo * __expf(mo - mn);
            m = mn;
        }
        if (lane == 0) { sm[0] = m; sl[0] = l; }
    }
    __syncthreads();
    m = sm[0];
    l = sl[0];
}

template <typename T, int NTHREADS>
__global__ void __launch_bounds__(NTHREADS) row_softmax(const T* __restrict__ x, T* __restrict__ y, int n_cols,
                                                        long long row_stride_x, long long row_stride_y) {
    __shared__ float sm[32], sl[32];
    const T* row = x + blockIdx.x * row_stride_x;
    float m = ATTN_NEG_INF, l = 0.f;
    for (int j = threadIdx.x; j < n_cols; j += NTHREADS) {
        float v = attn::to_float(row[j]), mn = fmaxf(m, v);
        l = (mn == ATTN_NEG_INF) ? 0.f : l * __expf(m - mn) + __expf(v - mn);
        m = mn;
    }
    block_merge<NTHREADS>(m, l, sm, sl);
    float inv = 1.f / l;
    T* out = y + blockIdx.x * row_stride_y;
    for (int j = threadIdx.x; j < n_cols; j += NTHREADS) out[j] = attn::from_float<T>(__expf(attn::to_float(row[j]) - m) * inv);
}
