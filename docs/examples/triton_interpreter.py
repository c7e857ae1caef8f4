# attn_triton's FlashAttention-2 kernel on the CPU, through Triton's interpreter (TRITON_INTERPRET=1).
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # must be set before triton is imported

import torch

from attn_reference import flash_attn_func as reference
from attn_triton import flash_attn_func

torch.manual_seed(0)
q = torch.randn(1, 40, 2, 32)  # fp32: the interpreter's bf16 dot is not trustworthy
k = torch.randn(1, 40, 2, 32)
v = torch.randn(1, 40, 2, 32)
out, lse = flash_attn_func(q, k, v, causal=True, return_lse=True)
ref, ref_lse = reference(q, k, v, causal=True, return_lse=True)
print("max |triton - reference| =", (out - ref).abs().max().item())
assert torch.allclose(out, ref, atol=1e-4) and torch.allclose(lse, ref_lse, atol=1e-4)
