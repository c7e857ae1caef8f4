# MLA decoding against a paged latent cache: the reference, and attn_flashmla's Triton path (interpreter).
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

import attn_flashmla
from attn_reference.mla import flash_mla_with_kvcache as reference

torch.manual_seed(0)
b, s_q, h_q, h_kv, d, dv, page = 2, 1, 16, 1, 576, 512, 64
cache_seqlens = torch.tensor([70, 130], dtype=torch.int32)
block_table = torch.arange(2 * 3, dtype=torch.int32).view(2, 3)  # sequence i owns pages 3i, 3i+1, 3i+2
k_cache = torch.randn(6, page, h_kv, d, dtype=torch.float16)  # FlashMLA takes bf16/fp16 (fp16 on the CPU)
q = torch.randn(b, s_q, h_q, d, dtype=torch.float16)
ref, ref_lse = reference(q, k_cache, block_table, cache_seqlens, dv, None, None)
meta, _ = attn_flashmla.get_mla_metadata()
out, lse = attn_flashmla.flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, dv, meta, None)
print("out", tuple(out.shape), "max |triton - reference| =", (out.float() - ref.float()).abs().max().item())
assert torch.allclose(out.float(), ref.float(), atol=1e-2) and torch.allclose(lse, ref_lse, atol=1e-2)
