"""Adapters to RL libraries, kept out of the core: importing ``fastsample`` (or this package)
imports none of them.

* :mod:`fastsample.compat.sb3` (needs ``stable-baselines3``, extra ``fastsample[sb3]``):
  ``wrap(vector_env)`` turns a fastsample ``VectorEnv`` into an SB3 ``VecEnv``;
  ``ProcessVecEnv(env_fns)`` is a drop-in for SB3's ``SubprocVecEnv`` on fastsample's
  shared-memory worker engine.
* TorchRL (extra ``fastsample[torchrl]``) needs no adapter: ``torchrl.envs.GymWrapper`` takes a
  fastsample env made with ``autoreset_mode="SameStep"`` or ``"Disabled"`` as it is.
"""

__all__: list[str] = []
