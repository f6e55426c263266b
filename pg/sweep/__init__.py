"""Grids and Optuna searches behind ``python -m pg.run -m``.

``mode`` decides which one a command line means (the rule), ``spec`` reads and checks a
sweep definition, ``space`` turns Hydra's override grammar into Optuna distributions,
``study`` owns the storage (budget lock, orphaned trials, a grid's re-queued
combinations), ``trial`` trains one trial (k seeds in lockstep, pruning), ``worker`` is
the ask -> run -> tell loop, ``results`` writes the end-of-sweep artifacts and ``engine``
ties them together.
"""
