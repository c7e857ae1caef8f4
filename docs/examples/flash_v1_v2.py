# FlashAttention-1 and -2 (attn_reference) agree with materialised-softmax attention.
import torch

from attn_reference import attention_naive, flash_v1_forward, flash_v2_forward

torch.manual_seed(0)
q = torch.randn(2, 100, 4, 64)  # (batch, seqlen_q, heads_q, head_dim)
k = torch.randn(2, 130, 2, 64)  # GQA: 2 KV heads serve 4 query heads
v = torch.randn(2, 130, 2, 64)
ref, ref_lse = attention_naive(q, k, v, causal=True, return_lse=True)
for fn in (flash_v1_forward, flash_v2_forward):
    out, lse = fn(q, k, v, causal=True, block_m=32, block_n=32)
    err = (out - ref).abs().max().item()
    print(f"{fn.__name__}: max |out - naive| = {err:.2e}")
    assert err < 1e-5 and torch.allclose(lse, ref_lse, atol=1e-5)
