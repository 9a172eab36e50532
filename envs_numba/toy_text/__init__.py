"""Small example environments written to the kernel protocol."""

from envs_numba.toy_text import grid_world

KERNELS = (grid_world.KERNEL,)
