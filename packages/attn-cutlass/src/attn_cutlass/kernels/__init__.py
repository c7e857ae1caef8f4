"""The CuTe DSL kernels. Each module imports ``cutlass`` at import time, so import them lazily."""
