"""Fitting a compiled Keras model (fit) and the EMA of its weights (ema); the per-backend runtime (precision,
seeding, devices, distribution) is :mod:`melanoma_lab.runtime`."""
