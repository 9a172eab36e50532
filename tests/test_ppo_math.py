"""PPO math: GAE against a plain reference, truncation bootstrapping, V-trace on-policy = GAE(1)."""

import numpy as np
import pytest
import torch

from fastsample.learning.ppo import ActorCritic, compute_gae, vtrace


def reference_gae(rewards, values, dones, last_value, gamma, lam):
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for i in range(N):
        running = 0.0
        for t in reversed(range(T)):
            next_v = last_value[i] if t == T - 1 else values[t + 1, i]
            nonterminal = 1.0 - dones[t, i]
            delta = rewards[t, i] + gamma * next_v * nonterminal - values[t, i]
            running = delta + gamma * lam * nonterminal * running
            adv[t, i] = running
    return adv, adv + values


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_matches_reference(lam):
    rng = np.random.default_rng(0)
    T, N = 17, 5
    r = rng.normal(size=(T, N))
    v = rng.normal(size=(T, N))
    d = (rng.random((T, N)) < 0.2).astype(np.float64)
    last = rng.normal(size=N)
    adv, ret = compute_gae(*(torch.from_numpy(x) for x in (r, v, d, last)), 0.97, lam)
    ref_adv, ref_ret = reference_gae(r, v, d, last, 0.97, lam)
    np.testing.assert_allclose(adv.numpy(), ref_adv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ret.numpy(), ref_ret, rtol=1e-12, atol=1e-12)


def test_truncation_is_bootstrapped_termination_is_not():
    # one env, 3 steps; step 1 ends the episode. Truncation: the runner folds gamma*V(final_obs)
    # into the reward, so the return at step 1 is r + gamma*V(final); termination gives just r.
    gamma, v_final = 0.9, 10.0
    values = torch.zeros(3, 1, dtype=torch.float64)
    dones = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
    last = torch.zeros(1, dtype=torch.float64)
    r = torch.ones(3, 1, dtype=torch.float64)
    _, ret_term = compute_gae(r, values, dones, last, gamma, 1.0)
    r_trunc = r.clone()
    r_trunc[1] += gamma * v_final
    _, ret_trunc = compute_gae(r_trunc, values, dones, last, gamma, 1.0)
    assert ret_term[1, 0] == pytest.approx(1.0)
    assert ret_trunc[1, 0] == pytest.approx(1.0 + gamma * v_final)
    assert ret_trunc[0, 0] == pytest.approx(1.0 + gamma * (1.0 + gamma * v_final))
    assert ret_trunc[2, 0] == pytest.approx(1.0)  # a new episode: nothing leaks across the boundary


def test_sync_runner_bootstraps_truncated_episodes():
    """CartPole episodes truncated at the time limit get gamma * V(final_obs) added to the reward."""
    from fastsample.runners.sync import SyncRunner
    from fastsample.train_config import make_config

    # the torch backend: the test sets the torch critic's weights (the compiled backend keeps its own copy)
    cfg = make_config("CartPole-v1", num_envs=4, num_steps=8, num_minibatches=1, total_steps=10_000, backend="torch")
    runner = SyncRunner(cfg, torch.device("cpu"))
    runner.env.max_episode_steps = 3
    runner.env._max_steps = 3  # truncate every episode after 3 steps
    runner.start()
    with torch.no_grad():
        for p in runner.learner.model.critic.parameters():
            p.zero_()
        runner.learner.model.critic[-1].bias.fill_(5.0)  # V(s) = 5 everywhere
    runner.cfg.update_epochs = 1
    runner.iteration_step()
    rewards = runner.rewards_np
    trunc_rows = rewards[2::3]  # steps 2, 5 end episodes by truncation
    np.testing.assert_allclose(trunc_rows, 1.0 + cfg.gamma * 5.0, rtol=1e-6)
    np.testing.assert_allclose(np.delete(rewards, [2, 5], axis=0), 1.0)
    runner.close()


def test_vtrace_on_policy_equals_gae_lambda_one():
    rng = np.random.default_rng(1)
    T, N = 9, 3
    r, v = torch.from_numpy(rng.normal(size=(T, N))), torch.from_numpy(rng.normal(size=(T, N)))
    d = torch.from_numpy((rng.random((T, N)) < 0.2).astype(np.float64))
    last = torch.from_numpy(rng.normal(size=N))
    _, vs = vtrace(r, v, d, last, torch.zeros(T, N, dtype=torch.float64), 0.95, 1.0)
    _, ret = compute_gae(r, v, d, last, 0.95, 1.0)
    np.testing.assert_allclose(vs.numpy(), ret.numpy(), rtol=1e-10)


def test_actor_critic_log_probs_and_flat_parameters():
    import gymnasium as gym

    torch.manual_seed(0)
    m = ActorCritic(3, gym.spaces.Box(-2, 2, (2,)), init_log_std=-0.5)
    x = torch.randn(6, 3)
    a, logp, value = m.act(x)
    logp2, ent, value2 = m.evaluate(x, a)
    torch.testing.assert_close(logp, logp2)
    dist = torch.distributions.Normal(m.actor(x), m.log_std.exp())
    torch.testing.assert_close(logp, dist.log_prob(a).sum(-1))
    torch.testing.assert_close(ent, dist.entropy().sum(-1))
    flat = m.flat_parameters()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        flat.add_(1.0)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, before[k] + 1.0)
    d = ActorCritic(4, gym.spaces.Discrete(3))
    x = torch.randn(5, 4)
    a, logp, _ = d.act(x)
    ref = torch.distributions.Categorical(logits=d.actor(x))
    torch.testing.assert_close(logp, ref.log_prob(a))
