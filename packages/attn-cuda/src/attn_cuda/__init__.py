"""CUDA C++ attention kernels compiled at run time with NVRTC through cuda-python.

``flash_attn_func`` (flash-attn's API) runs the tensor-core FlashAttention-2 forward and backward kernels
of ``kernels/flash_fwd.cu`` and ``kernels/flash_bwd_tiled.cu`` (``kernels/flash_bwd.cu`` holds the first
backward and the D = rowsum(dO * O) preprocessing); ``flash_attn_scalar_func`` the scalar FA-1/FA-2
teaching kernels; :mod:`attn_cuda.basics` the course that leads up to them; :mod:`attn_cuda.runtime` the
layer that compiles (NVRTC, cached) and launches (cuda.core, on torch's stream). Importing needs no GPU.
"""

__version__ = "0.1.0"

from .interface import flash_attn_func, flash_attn_scalar_func

__all__ = ["__version__", "flash_attn_func", "flash_attn_scalar_func"]
