"""Training a Flax MLP: data sets, the model, losses, batches, the compiled steps, ``fit`` and its checkpoints."""
