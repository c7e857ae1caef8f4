"""FlashAttention and GEMM kernels in the CUTLASS Python DSL (CuTe DSL), for sm90 (sm80 to come).

``flash_attn_func`` / ``flash_attn_varlen_func`` follow flash-attn's conventions; ``matmul`` is the Hopper
GEMM. The CuTe DSL (``nvidia-cutlass-dsl``) is imported by the kernel modules when a kernel is first
compiled, never at package import, so importing this package stays cheap and works without a GPU.
"""

__version__ = "0.1.0"

from .gemm import matmul
from .interface import flash_attn_func, flash_attn_varlen_func

__all__ = ["__version__", "flash_attn_func", "flash_attn_varlen_func", "matmul"]
