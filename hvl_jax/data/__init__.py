"""Dataset readers, transforms, rare-class sampling, the grain pipeline and the synthetic set."""
