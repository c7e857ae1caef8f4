"""The conformance suite run against the reference itself (CPU tier) and on a GPU (sm80 tier)."""

import pytest
import torch

import attn_reference as ar
from attn_reference.testing.conformance import AttentionConformance, Backend, Features

REFERENCE = Backend(
    name="attn-reference",
    flash_attn_func=ar.flash_attn_func,
    flash_attn_varlen_func=ar.flash_attn_varlen_func,
    flash_attn_with_kvcache=ar.flash_attn_with_kvcache,
    devices=("cpu", "cuda"),
    features=Features(
        dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64),
        head_dims=None,
        causal=True,
        window=True,
        softcap=True,
        gqa=True,
        lse=True,
        backward=True,
        varlen=True,
        kvcache=True,
        paged_kvcache=True,
        page_size_multiple=1,
    ),
)


class TestReferenceConformance(AttentionConformance):
    backend = REFERENCE
    device = "cpu"
    dtypes = (torch.float16, torch.bfloat16, torch.float32)
    size = "tiny"


@pytest.mark.gpu
class TestReferenceConformanceGPU(AttentionConformance):
    backend = REFERENCE
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16)
    size = "full"
