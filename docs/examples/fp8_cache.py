# FlashMLA's "FP8 with scale" cache: 656 bytes a token, power-of-two tile scales, exact dequantization.
import torch

from attn_reference import dequantize_kvcache_fp8, quantize_kvcache_fp8

torch.manual_seed(0)
latent = torch.randn(3, 64, 1, 576, dtype=torch.bfloat16)  # (blocks, page size, h_kv, 512 NoPE + 64 RoPE)
packed = quantize_kvcache_fp8(latent)
back = dequantize_kvcache_fp8(packed)
print("packed", tuple(packed.shape), packed.dtype)  # (3, 64, 1, 656) uint8
rel = (
    (back[..., :512].float() - latent[..., :512].float()).abs() / latent[..., :512].float().abs().amax()
).max()
print(
    f"NoPE max error relative to the tile maximum: {rel:.4f}; RoPE exact: {torch.equal(back[..., 512:], latent[..., 512:])}"
)
assert packed.shape[-1] == 656 and torch.equal(back[..., 512:], latent[..., 512:]) and rel < 2**-4
