"""The experiment runner: Flax MLP training loops, YAML configs, sweeps, plots and the ``jgd`` command line.

Installed with the ``experiment`` extra (``pip install 'jgd[experiment]'``). It uses the transform
library's public API alone (``jgd``, ``jgd.schedules``, ``jgd.masks``, ``jgd.types``); the library never
imports it.

Modules, by job:

- ``config/``: ``schema`` (the dataclasses, one per YAML section), ``field_readers`` (single values, errors
  naming the field), ``reader`` (YAML into the schema, by its fields and types), ``writer`` (the schema back
  to YAML data), ``method_table`` (the method names and schedules a config may use), ``optimizers`` (the
  chain a config describes, and what a sweep may vary). Reading a config loads neither Flax nor optax;
- ``train/``: ``data``, ``models`` and ``layers`` (the MLP and its activations and initializers),
  ``losses``, ``batching``, ``steps`` (objective, step, epoch, measurement), ``training`` (``fit``),
  ``early_stopping``, ``run_checkpoint`` and ``checkpoint``, ``sharding`` (device meshes);
- ``sweep/``: ``settings`` (tables of settings), ``engine`` (the vmapped sweep), ``results`` (rows, means
  over seeds, the best setting), ``from_config`` (a config's sweep section run by the engine);
- the command line: ``cli`` (arguments, and the config read before anything heavy loads), ``commands``
  (the runs of ``jgd train``, ``compare`` and ``sweep``), ``tables``, ``plots``, ``output_files``.
"""
