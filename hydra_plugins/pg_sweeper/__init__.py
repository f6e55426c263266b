"""Hydra finds sweepers only under the ``hydra_plugins`` namespace; the engine is pg.sweep."""
