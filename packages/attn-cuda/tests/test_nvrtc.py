"""NVRTC compiles real CUDA C++ to cubins for both target architectures, on the CPU (no GPU needed)."""

import struct

import pytest

from attn_cuda.nvrtc import ARCHS, compile_kernel

# A row-wise online softmax: one warp per row, the max and sum reductions by shuffles, the kind of code the
# attention kernels are built from.
ROW_SOFTMAX = r"""
extern "C" __global__ void row_softmax(const float* __restrict__ x, float* __restrict__ y, int n_cols) {
    const float* row = x + blockIdx.x * n_cols;
    float m = -__int_as_float(0x7f800000), l = 0.0f;  // -inf: NVRTC has no math.h
    for (int j = threadIdx.x; j < n_cols; j += 32) {
        float v = row[j], m_new = fmaxf(m, v);
        l = l * __expf(m - m_new) + __expf(v - m_new);
        m = m_new;
    }
    for (int off = 16; off > 0; off >>= 1) {
        float m_o = __shfl_xor_sync(0xffffffff, m, off), l_o = __shfl_xor_sync(0xffffffff, l, off);
        float m_new = fmaxf(m, m_o);
        l = l * __expf(m - m_new) + l_o * __expf(m_o - m_new);
        m = m_new;
    }
    for (int j = threadIdx.x; j < n_cols; j += 32) y[blockIdx.x * n_cols + j] = __expf(row[j] - m) / l;
}
"""

EM_CUDA = 190  # ELF e_machine of NVIDIA CUDA objects


@pytest.mark.parametrize("arch", ARCHS)
def test_compiles_to_a_cuda_elf_cubin(arch):
    cubin = compile_kernel(ROW_SOFTMAX, arch=arch)
    assert len(cubin) > 64
    assert cubin[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", cubin, 18)[0] == EM_CUDA
    assert b"row_softmax" in cubin  # extern "C": the kernel keeps its name for lookup


def test_cubins_differ_between_architectures():
    assert compile_kernel(ROW_SOFTMAX, arch="sm_80") != compile_kernel(ROW_SOFTMAX, arch="sm_90a")


def test_compile_error_carries_the_nvrtc_log():
    with pytest.raises(Exception, match="undefined_name"):
        compile_kernel('extern "C" __global__ void bad() { undefined_name(); }', arch="sm_80")


def test_rejects_a_virtual_architecture():
    with pytest.raises(ValueError, match="arch"):
        compile_kernel(ROW_SOFTMAX, arch="compute_90")
