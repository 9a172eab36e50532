"""Batched Numba environment kernels.

``KERNELS`` maps a gymnasium id (e.g. ``"CartPole-v1"``) to its :class:`EnvKernel`. Add your
own with :func:`register_kernel` (see the README's "Writing a kernel" and
``envs_numba/toy_text/grid_world.py``).

The MinAtar games are listed in ``KERNELS`` from the start but imported on the first lookup of
one of their ids, so a process that runs CartPole does not load (or start up) them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

from envs_numba.core import EnvKernel


class KernelRegistry(MutableMapping):
    """``id -> EnvKernel``. A lazy family (:meth:`add_lazy_family`) is a module whose ``KERNELS``
    tuple is imported on the first lookup of one of the ids it announced; until then its ids are
    listed (``in``, iteration, ``len``) without importing it."""

    def __init__(self) -> None:
        self._kernels: dict[str, EnvKernel] = {}
        self._lazy: dict[str, str] = {}  # id -> module that defines it

    def add_lazy_family(self, module: str, ids: tuple[str, ...]) -> None:
        for env_id in ids:
            if env_id not in self._kernels:
                self._lazy[env_id] = module

    def lazy_ids(self) -> tuple[str, ...]:
        """The ids whose family has not been imported yet."""
        return tuple(self._lazy)

    def _load(self, module: str) -> None:
        announced = {i for i, m in self._lazy.items() if m == module}
        kernels = importlib.import_module(module).KERNELS
        for kernel in kernels:
            if kernel.id in announced:
                self._kernels[kernel.id] = kernel
                del self._lazy[kernel.id]
        missing = {i for i, m in self._lazy.items() if m == module}
        if missing:  # a list of ids out of step with the module: a bug here, not the caller's
            raise RuntimeError(f"{module} does not define the kernels {sorted(missing)} announced for it")

    def __getitem__(self, env_id: str) -> EnvKernel:
        kernel = self._kernels.get(env_id)
        if kernel is None:
            if env_id not in self._lazy:
                raise KeyError(env_id)
            self._load(self._lazy[env_id])
            kernel = self._kernels[env_id]
        return kernel

    def __setitem__(self, env_id: str, kernel: EnvKernel) -> None:
        self._lazy.pop(env_id, None)
        self._kernels[env_id] = kernel

    def __delitem__(self, env_id: str) -> None:
        if env_id in self._lazy:
            del self._lazy[env_id]
        else:
            del self._kernels[env_id]

    def __contains__(self, env_id: object) -> bool:
        return env_id in self._kernels or env_id in self._lazy

    def __iter__(self) -> Iterator[str]:
        yield from list(self._kernels)
        yield from [i for i in self._lazy if i not in self._kernels]

    def __len__(self) -> int:
        return len(self._kernels) + sum(1 for i in self._lazy if i not in self._kernels)

    def __repr__(self) -> str:
        return f"KernelRegistry({sorted(self)})"


KERNELS = KernelRegistry()

MINATAR_IDS = tuple(f"MinAtar-{game}-{version}" for game in ("Breakout", "Freeway", "SpaceInvaders", "Asterix",
                                                            "Seaquest") for version in ("v1", "v0"))
"""The MinAtar ids, known without importing the games (tests/test_kernel_registry.py checks
them against ``envs_numba.minatar.KERNELS``)."""


def register_kernel(kernel: EnvKernel, *, overwrite: bool = False) -> EnvKernel:
    """Make ``kernel`` available to ``fastsample.make_vec(kernel.id, ...)``."""
    if not isinstance(kernel, EnvKernel):
        raise TypeError(f"expected an EnvKernel, got {type(kernel).__name__}")
    if kernel.id in KERNELS and not overwrite:
        raise ValueError(f"a kernel with id {kernel.id!r} is already registered")
    KERNELS[kernel.id] = kernel
    return kernel


def _register_builtin() -> None:
    from envs_numba import classic_control, toy_text

    for kernel in (*classic_control.KERNELS, *toy_text.KERNELS):
        register_kernel(kernel)
    KERNELS.add_lazy_family("envs_numba.minatar", MINATAR_IDS)


_register_builtin()

__all__ = ["EnvKernel", "KERNELS", "KernelRegistry", "MINATAR_IDS", "register_kernel"]
