"""CPU tier: the API validates before it touches a GPU, and importing it compiles nothing."""

import subprocess
import sys

import pytest
import torch

import attn_cutlass
from attn_reference.errors import AttentionArgumentError, UnsupportedFeatureError


def _qkv(d=64, dtype=torch.bfloat16):
    return [torch.randn(1, 8, 2, d, dtype=dtype) for _ in range(3)]


def test_import_does_not_load_the_dsl():
    code = "import sys, attn_cutlass; assert 'cutlass' not in sys.modules, 'cutlass imported at import'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unsupported_head_dim_raises_before_device_check():
    with pytest.raises(UnsupportedFeatureError):
        attn_cutlass.flash_attn_func(*_qkv(d=80))


def test_float64_is_refused():
    with pytest.raises(AttentionArgumentError):
        attn_cutlass.flash_attn_func(*_qkv(dtype=torch.float64))


def test_cpu_tensors_are_refused():
    with pytest.raises(AttentionArgumentError, match="CUDA"):
        attn_cutlass.flash_attn_func(*_qkv())


def test_custom_op_and_fake_impl_are_registered():
    op = torch.ops.attn_cutlass.flash_fwd
    q = torch.empty(2, 5, 4, 64, device="meta", dtype=torch.bfloat16)
    out, lse = op(q, q, q, None, None, 5, 0.125, False, -1, -1, 0.0)
    assert out.shape == q.shape and lse.shape == (2, 4, 5) and lse.dtype == torch.float32
