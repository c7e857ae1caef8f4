# Every backend speaks flash-attn's API: swap the import, keep the call (needs a CUDA GPU, sm_80+).
import torch

import attn_cuda
import attn_triton
from attn_reference import flash_attn_func as reference

q, k, v = (torch.randn(2, 4096, 16, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
ref = reference(q, k, v, causal=True)
for backend in (attn_triton, attn_cuda):
    out = backend.flash_attn_func(q, k, v, causal=True)
    print(backend.__name__, "max error", (out.float() - ref.float()).abs().max().item())
