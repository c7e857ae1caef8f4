"""attn-triton: Triton kernels from vector add to a FlashAttention-2 forward/backward and split-KV decoding.

Start with :mod:`attn_triton.basics`, then :mod:`.flash_fwd`, :mod:`.flash_bwd`, :mod:`.flash_decode`;
:mod:`.interface` wires them to the flash-attn API.
"""

from attn_triton.interface import flash_attn_func, flash_attn_varlen_func, flash_attn_with_kvcache

__version__ = "0.1.0"

__all__ = ["__version__", "flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache"]
