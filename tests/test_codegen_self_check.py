"""The first env a process builds checks the compiled bookkeeping kernels, and refuses to
run (naming the CPU target and the workaround) when their results are wrong."""

import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from numba import njit

import fastsample
from envs_numba import core
from fastsample import check


@njit(cache=False)
def finish_step_drops_flags_past_31(step_mask, elapsed, max_steps, rewards, terminated, truncated, pending):
    """The miscompile's symptom, on purpose: flags of envs from 32 on are cleared (so the
    first wrong size is 33)."""
    done = core.finish_step(step_mask, elapsed, max_steps, rewards, terminated, truncated, pending)
    for i in range(32, step_mask.shape[0]):
        terminated[i] = False
        truncated[i] = False
    return done


def test_self_check_passes_on_the_real_kernels():
    core.self_check()


def test_self_check_names_target_and_workaround_for_a_broken_kernel():
    with pytest.raises(core.CodegenError) as err:
        core.self_check(finish_step=finish_step_drops_flags_past_31)
    msg = str(err.value)
    assert "finish_step at 33 envs" in msg and "finish_step at 32 envs" not in msg
    assert "NUMBA_CPU_NAME=generic" in msg and core.codegen_target() in msg


def test_self_check_catches_writes_past_the_end():
    def start_episodes_overruns(mask, elapsed, pending):
        core.start_episodes(mask, elapsed, pending)
        np.frombuffer(pending.base, dtype=np.bool_)[mask.shape[0]] = False  # the byte after

    with pytest.raises(core.CodegenError, match="a write past the end of pending"):
        core.self_check(start_episodes=start_episodes_overruns)


def test_first_env_refuses_to_run_on_broken_bookkeeping(monkeypatch):
    monkeypatch.setattr(core, "_self_checked", False)
    monkeypatch.setattr(core, "finish_step", finish_step_drops_flags_past_31)
    with pytest.raises(core.CodegenError, match="NUMBA_CPU_NAME=generic"):
        fastsample.make_vec("CartPole-v1", 4)
    monkeypatch.undo()
    fastsample.make_vec("CartPole-v1", 4).close()  # the real kernels pass


# The loop as it was before issue 9: stores under ``if``, vectorised into masked byte stores.
PRE_FIX_FINISH_STEP = '''
from numba import njit

@njit
def finish_step(step_mask, elapsed, max_steps, rewards, terminated, truncated, pending):
    done = 0
    for i in range(step_mask.shape[0]):
        if step_mask[i]:
            elapsed[i] += 1
            truncated[i] = max_steps > 0 and elapsed[i] >= max_steps
            pending[i] = terminated[i] or truncated[i]
            if pending[i]:
                done += 1
        else:
            rewards[i] = 0.0
            terminated[i] = False
            truncated[i] = False
            elapsed[i] = 0
            pending[i] = False
    return done
'''


@pytest.mark.skipif(not {"avx512f", "avx512bw", "avx512vl"} <= check.host_features(),
                    reason="LLVM's masked byte-store miscompile needs a CPU with AVX-512BW/VL")
@pytest.mark.parametrize("target", ["x86-64-v2", "znver4"])
def test_self_check_catches_the_real_miscompile(tmp_path, target):
    """The pre-fix loop, compiled as on a Zen 4, gives wrong flags and writes past the end;
    the self-check says so."""
    (tmp_path / "prefix.py").write_text(PRE_FIX_FINISH_STEP)
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from prefix import finish_step
        from envs_numba import core
        try:
            core.self_check(finish_step=finish_step)
        except core.CodegenError as e:
            print(e)
            sys.exit(3)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU_")}
    with tempfile.TemporaryDirectory() as cache:
        env.update(NUMBA_CPU_NAME=target, NUMBA_CACHE_DIR=cache)
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "finish_step at 32 envs" in proc.stdout and f"NUMBA_CPU_NAME={target}" in proc.stdout
