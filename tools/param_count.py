r"""Parameter count of the full HVL model by component (no weights are downloaded or allocated).

  python -m tools.param_count --config configs/voc_92.py

A pretrained checkpoint named in the config is replaced by a random CLIP of the same sizes
(the model.clip fields); shapes come from jax.eval_shape.
"""
from absl import app
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets
from hvl_jax.models import hvl
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones import registry

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')

FROZEN_ROWS = ('text encoder E_T (frozen)', 'reference encoder E_I^0 (frozen)')


def main(argv):
  del argv
  config = _CONFIG.value
  settings = hvl.model_config(config)
  cfg = registry.clip_config(settings.clip, settings.backbone)
  abstract_clip = clip_weights.CLIP(cfg, None,
                                    clip_weights.HashTokenizer(cfg.vocab_size, cfg.context_length))
  model, _ = hvl.build_model(config, datasets.class_names(config), abstract_clip)
  size = config.data.crop_size
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)),
                          jnp.ones((1, config.data.num_classes)))['params']
  # The reference encoder E_I^0 is a copy of the backbone (not built by a forward pass with s_k
  # given).
  rows = state_lib.parameter_counts(dict(shapes, reference_encoder=shapes['backbone']))
  total = sum(rows.values())
  print(
      f'HVL parameters, config {config.data.name} {config.data.split}, '
      f'K={config.data.num_classes}, '
      f''
      f''
      f''
      f''
      f'backbone {settings.backbone} (width {cfg.vision.width} x {cfg.vision.layers})')
  print(f'| {"component":34s} | {"parameters":>13s} |')
  print(f'|{"-" * 36}|{"-" * 15}|')
  for name, n in list(rows.items()) + [('total', total),
                                       ('trainable', total - sum(rows[r] for r in FROZEN_ROWS))]:
    print(f'| {name:34s} | {n:13,d} |')


if __name__ == '__main__':
  app.run(main)
