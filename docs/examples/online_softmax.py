# Online softmax: two blocks of scores merged with the rescaling trick equal one softmax over both.
import torch

torch.manual_seed(0)
s = torch.randn(8, 256, dtype=torch.float64)  # 8 rows of scores, 256 keys
v = torch.randn(256, 16, dtype=torch.float64)
exact = torch.softmax(s, dim=-1) @ v

m = torch.full((8, 1), float("-inf"), dtype=torch.float64)  # running max
l = torch.zeros(8, 1, dtype=torch.float64)  # running sum of exp(s - m)
acc = torch.zeros(8, 16, dtype=torch.float64)  # running sum of exp(s - m) V, unnormalised
for j in range(0, 256, 64):  # four key blocks
    s_j = s[:, j : j + 64]
    m_new = torch.maximum(m, s_j.amax(dim=-1, keepdim=True))
    alpha = torch.exp(m - m_new)  # rescales everything accumulated under the old max
    p = torch.exp(s_j - m_new)
    l = alpha * l + p.sum(dim=-1, keepdim=True)
    acc = alpha * acc + p @ v[j : j + 64]
    m = m_new
out = acc / l  # one division at the end (FlashAttention-2)
print("max |online - exact| =", (out - exact).abs().max().item())
assert torch.allclose(out, exact, atol=1e-12)
