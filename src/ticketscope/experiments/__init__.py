"""Experiments built from many runs: sweeps over config grids (and the shipped presets)."""
