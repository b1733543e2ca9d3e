"""The experiment runner: Flax MLP training loops, YAML configs, sweeps, plots and the ``jgd`` command line.

Installed with the ``experiment`` extra (``pip install 'jgd[experiment]'``). It imports the transform
library (``jgd``); the library never imports it.

Modules, by job:

- configs: ``schema`` (the dataclasses, one per YAML section), ``field_readers`` (single values, errors
  naming the field), ``config_reader`` (YAML into the schema, by its fields and types), ``config_writer``
  (the schema back to YAML data);
- optimizers: ``methods`` (the table of method names and schedules), ``optimizers`` (the chain a config
  describes, and what a sweep may vary);
- training: ``data``, ``models``, ``losses``, ``batching``, ``steps`` (objective, step, epoch,
  measurement), ``training`` (``fit``), ``early_stopping``, ``run_checkpoint`` and ``checkpoint``,
  ``sharding`` (device meshes);
- sweeps: ``settings`` (tables of settings), ``sweep`` (the vmapped engine), ``sweep_results``,
  ``sweep_config`` (a config's sweep section run by the engine);
- output: ``output_files``, ``plots``, ``cli``.
"""
