"""hvl_jax: HVL (hierarchical vision-language queries) for semi-supervised segmentation in JAX.

`from hvl_jax import Segmenter` gives a trained network as a Python object
(hvl_jax/inference/segmenter.py).
"""


def __getattr__(name):
  # Imported on first use (PEP 562), not with the package: `python -m hvl_jax.main` checks the
  # Python version and sets XLA's logging before anything imports jax.
  if name == 'Segmenter':
    from hvl_jax.inference.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
    return Segmenter
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
