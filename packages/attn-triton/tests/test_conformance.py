"""The shared conformance suite against attn-triton: CPU tier under the interpreter, sm90 tier on Hopper."""

from __future__ import annotations

import pytest
import torch

import attn_triton
from attn_reference.testing.conformance import AttentionConformance, Backend, Features
from attn_triton._runtime import interpreting

FEATURES = Features(
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    head_dims=(32, 64, 96, 128, 192, 256),
    causal=True,
    window=True,
    softcap=True,
    gqa=True,
    lse=True,
    backward=True,
    deterministic=True,
    varlen=True,
    kvcache=True,
    paged_kvcache=True,
    page_size_multiple=16,
)
BACKEND = Backend(
    name="attn-triton",
    flash_attn_func=attn_triton.flash_attn_func,
    flash_attn_varlen_func=attn_triton.flash_attn_varlen_func,
    flash_attn_with_kvcache=attn_triton.flash_attn_with_kvcache,
    features=FEATURES,
)


@pytest.mark.skipif(not interpreting(), reason="the CPU tier needs TRITON_INTERPRET=1")
class TestTritonConformanceInterpreter(AttentionConformance):
    backend = BACKEND
    device = "cpu"
    dtypes = (torch.float16, torch.float32)  # the interpreter's bf16 dot is wrong
    size = "tiny"


gpu_tier = pytest.mark.skipif(interpreting(), reason="GPU tier: run without TRITON_INTERPRET")


class _GpuConformance(AttentionConformance):
    backend = BACKEND
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"


@pytest.mark.sm90
@gpu_tier
class TestTritonConformanceSm90(_GpuConformance):
    pass


@pytest.mark.sm80
@gpu_tier
class TestTritonConformanceSm80(_GpuConformance):
    """The pointer (non-TMA) path, forced on any sm80+ GPU including Hopper."""

    @pytest.fixture(autouse=True)
    def _force_sm80(self, monkeypatch):
        import attn_triton._runtime as rt

        original = rt.path_for
        monkeypatch.setattr(rt, "path_for", lambda dev: "sm80" if original(dev) == "sm90" else original(dev))
        for mod in ("flash_fwd", "flash_bwd", "flash_decode"):
            monkeypatch.setattr(f"attn_triton.{mod}.path_for", rt.path_for)
