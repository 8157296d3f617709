"""Experiments on Optuna: `search` (a sampler proposes recipes; one study, one or many workers)
and `sweep` (listed or gridded recipes), both running each trial as the pipeline's chain."""
