# The FlashAttention-2 backward (recompute P from the logsumexp) equals autograd through naive attention.
import torch

from attn_reference import attention_naive, flash_v2_backward, flash_v2_forward

torch.manual_seed(0)
q, k, v = (torch.randn(1, 48, 2, 32, dtype=torch.float64, requires_grad=True) for _ in range(3))
dout = torch.randn(1, 48, 2, 32, dtype=torch.float64)

out = attention_naive(q, k, v, causal=True, accum_dtype=torch.float64)
out.backward(dout)

o, lse = flash_v2_forward(q, k, v, causal=True, block_m=16, block_n=16, accum_dtype=torch.float64)
grads = flash_v2_backward(
    dout, q, k, v, o, lse, causal=True, block_m=16, block_n=16, accum_dtype=torch.float64
)
for name, g, ref in zip("qkv", grads, (q.grad, k.grad, v.grad)):
    print(f"d{name}: max error {(g - ref).abs().max().item():.1e}")
    assert torch.allclose(g, ref, atol=1e-10)
