"""Gymnasium's classic-control tasks as batched kernels, bit-identical to gymnasium."""

from importlib import import_module

_MODULES = ("cartpole", "acrobot", "mountain_car", "continuous_mountain_car", "pendulum")

KERNELS = []
for _name in _MODULES:
    try:
        KERNELS.append(import_module(f"envs_numba.classic_control.{_name}").KERNEL)
    except ModuleNotFoundError as _err:  # TEMPORARY while the family is being written
        if _err.name != f"envs_numba.classic_control.{_name}":
            raise
KERNELS = tuple(KERNELS)
