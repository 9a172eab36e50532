"""Gymnasium's classic-control tasks as batched kernels, bit-identical to gymnasium."""

from envs_numba.classic_control import acrobot, cartpole, continuous_mountain_car, mountain_car, pendulum

KERNELS = (cartpole.KERNEL, acrobot.KERNEL, mountain_car.KERNEL, continuous_mountain_car.KERNEL, pendulum.KERNEL)
