"""Sweeps: tables of settings, the vmapped engine that trains them at once, and the reading of its results."""
