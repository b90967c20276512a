"""Flax modules of the HVL network (models are separate from training)."""
