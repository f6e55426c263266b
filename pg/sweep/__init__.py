"""Optuna sweeps behind ``python -m pg.run -m``.

``spec`` reads and checks a sweep definition, ``space`` turns Hydra's override grammar
into Optuna distributions, ``study`` owns the storage (budget lock, orphaned trials),
``trial`` trains one trial (k seeds in lockstep, pruning), ``worker`` is the ask -> run ->
tell loop, ``results`` writes the end-of-sweep artifacts and ``engine`` ties them together.
"""
