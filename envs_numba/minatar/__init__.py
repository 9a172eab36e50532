"""The five MinAtar games (Young & Tian, 2019) as batched kernels, one file per game, checked
step by step against the ``minatar`` package (``tests/test_minatar_<game>_align.py``).

Ids: ``MinAtar-<Game>-v1`` (the package's minimal action set) and ``MinAtar-<Game>-v0`` (all
six actions), with the package's kwargs ``sticky_action_prob`` (0.1) and
``difficulty_ramping`` (True). ``_common.py`` holds what the games share.
"""

from envs_numba.minatar import asterix, breakout, freeway, seaquest, space_invaders

GAMES = {"breakout": breakout, "freeway": freeway, "space_invaders": space_invaders, "asterix": asterix,
         "seaquest": seaquest}

KERNELS = tuple(k for game in GAMES.values() for k in game.KERNELS)
