"""``python -m bench`` bad input: clear messages, nothing measured. No speed assertions."""

from __future__ import annotations

import pytest

bench_main = pytest.importorskip("bench.__main__")

from bench import ladder, peers, training  # noqa: E402
from bench.common import Ctx, Measurement, Settings  # noqa: E402


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = bench_main.main(["--dry-run", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_unknown_rung_alone_is_an_error_listing_the_valid_rungs(capsys):
    rc, out, err = run(capsys, "--rungs", "R99")
    assert rc == 2
    assert "unknown rung(s) 'R99'" in err
    assert "valid rungs: " + ", ".join(ladder.RUNGS) in err
    assert "nothing to run" in err


def test_unknown_rung_is_skipped_and_the_rest_still_runs(capsys):
    rc, out, err = run(capsys, "--rungs", "r0,R3,Rx")
    assert rc == 0
    assert "unknown rung(s) 'Rx'" in err and "valid rungs:" in err
    assert "rungs R0, R3" in out  # case-insensitive names, ladder order


def test_unknown_section_and_env_names(capsys):
    rc, out, err = run(capsys, "--only", "envs,bogus", "--envs", "CartPole-v1,NoSuchEnv-v0")
    assert rc == 0
    assert "unknown section(s) 'bogus'; valid sections: ladder, peers" in err
    assert "unknown env id(s) 'NoSuchEnv-v0'; valid: CartPole-v1" in err
    assert "envs: CartPole-v1" in out and "NoSuchEnv" not in out

    rc, _, err = run(capsys, "--only", "envs", "--envs", "NoSuchEnv-v0")
    assert rc == 2 and "nothing to run" in err


def test_more_workers_than_envs_in_the_workers_sweep(capsys):
    rc, out, err = run(capsys, "--only", "sweeps", "--sweep-workers", "1,4", "--sweep-workers-num-envs", "2")
    assert rc == 0
    assert "4 workers > num_envs=2: each worker needs at least one env; that point is skipped" in err
    assert "sweep: fastsample, 1 workers" in out  # the possible points remain


def test_more_workers_than_envs_in_the_ladder_skips_without_starting_workers(capsys):
    rc, out, err = run(capsys, "--rungs", "R3,R4", "--workers", "4", "--num-envs", "2")
    assert rc == 0
    assert "--workers 4 > --num-envs 2" in err
    ctx = Ctx(Settings(workers=4, num_envs=2))
    m = ladder.run(ctx, "R4")
    assert not m.ok and m.status.startswith("skipped: 4 workers > num_envs=2")


def test_workers_sweep_point_over_num_envs_is_a_message():
    from bench.sweeps import workers_point

    ctx = Ctx(Settings(sweep_workers_n=2))
    m = workers_point(ctx, "fastsample", 3)
    assert not m.ok and "3 workers > num_envs=2" in m.status


@pytest.mark.parametrize("argv, message", [
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--sweep-num-envs", "1,x"], "--sweep-num-envs must be comma-separated positive integers"),
    (["--sweep-workers", "0"], "--sweep-workers must be comma-separated positive integers"),
    (["--workers", "0"], "--workers must be >= 1"),
])
def test_impossible_numbers_stop_before_measuring(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and message in err and out == ""


def test_missing_peers_and_pending_trainer_are_rows_not_gaps(monkeypatch, tmp_path):
    monkeypatch.setattr(peers, "_envpool", lambda: None)
    monkeypatch.setattr(training, "trainer_missing", lambda: training.PENDING)
    ctx = Ctx(Settings())
    ep = peers.envpool_sync(ctx)
    assert not ep.ok and ep.status.startswith("not installed") and "pip install envpool" in ep.status
    r8 = training.r8(ctx, "sync")
    assert not r8.ok and r8.status.startswith("pending (trainer not merged)")

    from bench.report import Report

    results = {("ladder", "R0"): Measurement("R0", rates=[1.0, 2.0, 3.0]), ("ladder", "R8"): r8,
               ("peers", "envpool_sync"): ep}
    text = Report(results, Settings(), {"cpu": "x", "cores": "2", "memory": "1 GiB", "gpu": "none", "commit": "abc"},
                  command="python -m bench", date="today", elapsed_s=1.0, output=tmp_path / "RESULTS.md",
                  plots_dir=tmp_path, sections=["ladder", "peers"], all_sections=list(bench_main.SECTIONS),
                  problems=[]).render()
    assert "pending (trainer not merged)" in text
    assert "not installed (pip install envpool" in text


def test_list(capsys):
    assert bench_main.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ladder.RUNGS)
