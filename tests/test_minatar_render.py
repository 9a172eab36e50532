"""``render_mode="rgb_array"`` for the MinAtar games: the kernel's own ``render_rgb`` hook
(``envs_numba.core.EnvKernel``) draws a (160, 160, 3) uint8 frame per env, each 10x10 cell a
16x16 block in its top channel's colour (black when empty), through ``make_vec``, the engine
and ``gymnasium.make_vec``."""

import gymnasium as gym
import numpy as np
import pytest

import envs_numba
import fastsample
from envs_numba.minatar import _common as C

IDS = ["MinAtar-Breakout-v1", "MinAtar-Freeway-v1", "MinAtar-SpaceInvaders-v1", "MinAtar-Asterix-v1",
       "MinAtar-Seaquest-v1"]
S = C.CELL_PX


def expected_frame(obs: np.ndarray) -> np.ndarray:
    """What a frame of one observation ``(10, 10, C)`` must be, computed with NumPy."""
    n_ch = obs.shape[2]
    top = np.max(obs * np.arange(1, n_ch + 1), axis=2)  # highest channel set, 0 for none
    cells = C.palette(n_ch)[top]  # (10, 10, 3)
    return np.repeat(np.repeat(cells, S, axis=0), S, axis=1)


def test_palette_distinct_colours_on_black():
    for n_ch in (4, 6, 7, 10):
        pal = C.palette(n_ch)
        assert pal.shape == (n_ch + 1, 3) and pal.dtype == np.uint8
        assert not pal[0].any()
        assert len({tuple(c) for c in pal}) == n_ch + 1  # every channel its own colour
        assert (pal[1:].astype(int).sum(axis=1) >= 120).all()  # none close to black


@pytest.mark.parametrize("env_id", IDS)
def test_each_channel_gets_its_colour(env_id):
    """One cell of one channel at a time: that cell (all 16x16 pixels) has the channel's
    colour and the rest of the frame is black; with every channel set, the highest wins."""
    kernel = envs_numba.KERNELS[env_id]
    n_ch = kernel.observation_space.shape[2]
    pal = C.palette(n_ch)
    for c in range(n_ch):
        y, x = (3 * c) % 10, (7 * c + 2) % 10
        cells = np.zeros((10, 10, n_ch), dtype=np.bool_)
        cells[y, x, c] = True
        frame = np.empty((10 * S, 10 * S, 3), dtype=np.uint8)
        C.paint(cells, pal, frame)
        assert (frame[y * S:(y + 1) * S, x * S:(x + 1) * S] == pal[c + 1]).all()
        frame[y * S:(y + 1) * S, x * S:(x + 1) * S] = 0
        assert not frame.any()
    cells = np.ones((10, 10, n_ch), dtype=np.bool_)
    frame = np.empty((10 * S, 10 * S, 3), dtype=np.uint8)
    C.paint(cells, pal, frame)
    assert (frame == pal[n_ch]).all()


@pytest.mark.parametrize("env_id", IDS)
def test_frames_show_the_observation_and_follow_the_state(env_id):
    env = fastsample.make_vec(env_id, 3, seed=2, render_mode="rgb_array", max_episode_steps=60)
    assert env.metadata["render_modes"] == ["rgb_array"]
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    frames = env.render()
    distinct = set()
    try:
        for t in range(80):
            assert isinstance(frames, tuple) and len(frames) == 3
            for i, f in enumerate(frames):
                assert f.shape == (160, 160, 3) and f.dtype == np.uint8
                np.testing.assert_array_equal(f, expected_frame(obs[i]))
                distinct.add(f.tobytes())
            obs, *_ = env.step(rng.integers(0, env.single_action_space.n, 3))
            frames = env.render()
    finally:
        env.close()
    assert len(distinct) > 20  # frames change as the games go on


@pytest.mark.parametrize("env_id", IDS)
def test_render_through_workers_and_gymnasium_make_vec(env_id):
    """``make_vec(num_workers=2)`` and ``gymnasium.make_vec`` give the in-process frames."""
    n = 5
    ref = fastsample.make_vec(env_id, n, seed=3, render_mode="rgb_array")
    workers = fastsample.make_vec(env_id, n, seed=3, render_mode="rgb_array", num_workers=2)
    via_gym = gym.make_vec(f"fastsample/{env_id}", n, render_mode="rgb_array")
    try:
        for env in (ref, workers, via_gym):
            env.reset(seed=3)
        rng = np.random.default_rng(1)
        for _ in range(40):
            a = rng.integers(0, ref.single_action_space.n, n)
            for env in (ref, workers, via_gym):
                env.step(a)
        want = ref.render()
        for env in (workers, via_gym):
            got = env.render()
            assert len(got) == n
            for f, g in zip(want, got):
                np.testing.assert_array_equal(f, g)
    finally:
        for env in (ref, workers, via_gym):
            env.close()


def test_render_does_not_touch_the_envs():
    env = fastsample.make_vec("MinAtar-Seaquest-v1", 4, seed=0, render_mode="rgb_array")
    ref = fastsample.make_vec("MinAtar-Seaquest-v1", 4, seed=0)
    env.reset()
    ref.reset()
    rng = np.random.default_rng(3)
    for _ in range(60):
        a = rng.integers(0, 6, 4)
        env.render()
        out, want = env.step(a), ref.step(a)
        for x, y in zip(out[:4], want[:4]):
            np.testing.assert_array_equal(x, y)
    env.close()
    ref.close()


def test_render_without_mode_warns_and_returns_none():
    env = fastsample.make_vec("MinAtar-Breakout-v1", 2)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None
    env.close()
