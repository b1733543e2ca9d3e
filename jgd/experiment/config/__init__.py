"""Experiment configs: the YAML schema, its reading and checking, and the optimizer a config describes.

Reading a config loads ``yaml`` and the transform library, and optax only for a config that names an
``optax.`` method, so a mistake in it is reported before the training modules load Flax and matplotlib.
"""
