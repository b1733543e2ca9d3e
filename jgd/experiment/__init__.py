"""The experiment runner: Flax MLP training loops, YAML configs, sweeps, plots and the ``jgd`` command line.

Installed with the ``experiment`` extra (``pip install 'jgd[experiment]'``). It imports the transform
library (``jgd``); the library never imports it.
"""
