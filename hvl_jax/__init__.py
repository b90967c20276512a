"""hvl_jax: HVL (hierarchical vision-language queries) for semi-supervised segmentation in JAX."""
