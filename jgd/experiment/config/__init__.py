"""Experiment configs: the YAML schema, its reading and checking, and the optimizer a config describes.

Reading a config loads only ``yaml`` and the transform library, so a mistake in one is reported before
the training modules load Flax and optax.
"""
