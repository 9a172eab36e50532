"""Batched Numba environment kernels.

``KERNELS`` maps a gymnasium id (e.g. ``"CartPole-v1"``) to its :class:`EnvKernel`. Add your
own with :func:`register_kernel` (see the README's "Writing a kernel" and
``envs_numba/toy_text/grid_world.py``).
"""

from __future__ import annotations

from envs_numba.core import EnvKernel

KERNELS: dict[str, EnvKernel] = {}


def register_kernel(kernel: EnvKernel, *, overwrite: bool = False) -> EnvKernel:
    """Make ``kernel`` available to ``fastsample.make_vec(kernel.id, ...)``."""
    if not isinstance(kernel, EnvKernel):
        raise TypeError(f"expected an EnvKernel, got {type(kernel).__name__}")
    if kernel.id in KERNELS and not overwrite:
        raise ValueError(f"a kernel with id {kernel.id!r} is already registered")
    KERNELS[kernel.id] = kernel
    return kernel


def _register_builtin() -> None:
    from envs_numba import classic_control, minatar, toy_text

    for kernel in (*classic_control.KERNELS, *toy_text.KERNELS, *minatar.KERNELS):
        register_kernel(kernel)


_register_builtin()

__all__ = ["EnvKernel", "KERNELS", "register_kernel"]
