"""The kernel registry imports what a process uses and nothing more: the MinAtar games and the
process engine load on first use, and what is registered before they load matches them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import envs_numba
import fastsample  # noqa: F401  (registers fastsample/<Id>)
from envs_numba import EnvKernel, KernelRegistry
from envs_numba.classic_control import cartpole

ROOT = Path(__file__).resolve().parents[1]

LOADED = ("envs_numba.minatar", "fastsample.engine.process_vector_env", "fastsample.engine.worker", "torch")


def _modules_after(code: str) -> dict[str, bool]:
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps({{m: m in sys.modules for m in {list(LOADED)!r}}}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cartpole_in_process_loads_neither_minatar_nor_the_engine():
    loaded = _modules_after("import fastsample\n"
                            "env = fastsample.make_vec('CartPole-v1', 4)\nenv.reset(seed=0)\n"
                            "env.step(env.action_space.sample())\nenv.close()")
    assert loaded == {m: False for m in LOADED}


def test_train_cartpole_loads_neither_minatar_nor_the_engine_nor_torch(tmp_path):
    loaded = _modules_after("from fastsample.cli import main\n"
                            f"assert main(['train', '--env', 'CartPole-v1', '--total-steps', '4096', "
                            f"'--no-stop-when-solved', '--run-dir', {str(tmp_path / 'run')!r}, '--no-progress', "
                            "'--device', 'cpu']) == 0")
    assert loaded == {m: False for m in LOADED}


def test_engine_names_load_on_first_use():
    loaded = _modules_after("import fastsample\nfrom fastsample import ProcessVectorEnv, WorkerError\n"
                            "assert fastsample.CallInterrupted.__name__ == 'CallInterrupted'")
    assert loaded["fastsample.engine.process_vector_env"] and not loaded["envs_numba.minatar"]
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        fastsample.NoSuchThing  # noqa: B018


def test_minatar_ids_and_registrations_match_the_games():
    from envs_numba import minatar

    assert sorted(envs_numba.MINATAR_IDS) == sorted(k.id for k in minatar.KERNELS)
    for kernel in minatar.KERNELS:
        assert envs_numba.KERNELS[kernel.id] is kernel
        spec = gym.spec("fastsample/" + kernel.id)
        # registered before the games were imported, with what a lazy family is registered with
        assert spec.entry_point == kernel.gym_entry_point
        assert spec.max_episode_steps == kernel.max_episode_steps
        assert spec.reward_threshold == kernel.reward_threshold
    assert not envs_numba.KERNELS.lazy_ids()


def test_lazy_family_listed_before_import_and_loaded_on_lookup():
    reg = KernelRegistry()
    reg["CartPole-v1"] = cartpole.KERNEL
    reg.add_lazy_family("envs_numba.minatar", ("MinAtar-Breakout-v1",))
    assert list(reg) == ["CartPole-v1", "MinAtar-Breakout-v1"] and len(reg) == 2
    assert "MinAtar-Breakout-v1" in reg and reg.lazy_ids() == ("MinAtar-Breakout-v1",)
    kernel = reg["MinAtar-Breakout-v1"]
    assert isinstance(kernel, EnvKernel) and kernel.id == "MinAtar-Breakout-v1"
    assert reg.lazy_ids() == () and len(reg) == 2
    with pytest.raises(KeyError):
        reg["MinAtar-Pong-v1"]
    del reg["CartPole-v1"]
    assert list(reg) == ["MinAtar-Breakout-v1"]


def test_lazy_family_out_of_step_with_its_module_is_a_clear_error():
    reg = KernelRegistry()
    reg.add_lazy_family("envs_numba.minatar", ("MinAtar-Breakout-v1", "MinAtar-Pong-v1"))
    with pytest.raises(RuntimeError, match=r"does not define the kernels \['MinAtar-Pong-v1'\]"):
        reg["MinAtar-Breakout-v1"]


def test_register_kernel_replaces_a_lazy_id_only_with_overwrite():
    reg_before = dict.fromkeys(envs_numba.KERNELS)
    with pytest.raises(ValueError, match="already registered"):
        envs_numba.register_kernel(cartpole.KERNEL)
    assert dict.fromkeys(envs_numba.KERNELS) == reg_before
