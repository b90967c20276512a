r"""Parameter count of the full HVL model by component (no weights are downloaded or allocated).

  python -m benchmarks.param_count --config configs/voc_92.py

A pretrained checkpoint named in the config is replaced by a random CLIP of the
same sizes (model.clip fields: ViT-B/16 by default); shapes come from jax.eval_shape.
"""
import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from ml_collections import config_flags

from hvl_jax.data import datasets
from hvl_jax.models import clip as clip_lib
from hvl_jax.models import clip_weights, hvl

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/voc_92.py', 'Config file.')


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def components(params):
  """{name: count} for backbone, text, prompt, HTQG, pixel decoder, PTRM, DQTD and the rest."""
  pd = params['pixel_decoder']
  htqg = params.get('htqg', {})
  rows = {
      'backbone E_I (CLIP ViT)': count(params['backbone']),
      'simple feature pyramid': count(params['pyramid']),
      'text encoder E_T (frozen)': count(params['text_encoder']),
      'prompt (8 learnable tokens)': count(htqg.get('prompt', {})),
      'HTQG (level MLPs + Phi)': count({k: v for k, v in htqg.items() if k != 'prompt'}),
      'pixel decoder (MSDeformAttn)': count({k: v for k, v in pd.items() if not k.startswith('ptrm_')}),
      'PTRM (6 layers x 3 levels)': count({k: v for k, v in pd.items() if k.startswith('ptrm_')}),
      'DQTD (transformer decoder)': count(params['decoder']),
      'reference encoder E_I^0 (frozen)': count(params.get('reference_encoder', params['backbone'])),
  }
  return rows


def main(argv):
  del argv
  config = _CONFIG.value
  cfg = clip_lib.CLIPConfig.from_fields(config.model.clip, config.model.backbone)
  abstract_clip = clip_weights.CLIP(cfg, None, clip_weights.HashTokenizer(cfg.vocab_size, cfg.context_length))
  model, _ = hvl.build_model(config, datasets.class_names(config), abstract_clip)
  size = config.data.crop_size
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)),
                          jnp.ones((1, config.data.num_classes)))['params']
  shapes = dict(shapes, reference_encoder=shapes['backbone'])
  rows = components(shapes)
  total = sum(rows.values())
  trainable = total - rows['text encoder E_T (frozen)'] - rows['reference encoder E_I^0 (frozen)']
  print(f'HVL parameters, config {config.data.name} {config.data.split}, K={config.data.num_classes}, '
        f'ViT width {cfg.vision.width} x {cfg.vision.layers}')
  print(f'| {"component":34s} | {"parameters":>13s} |')
  print(f'|{"-" * 36}|{"-" * 15}|')
  for name, n in rows.items():
    print(f'| {name:34s} | {n:13,d} |')
  print(f'| {"total":34s} | {total:13,d} |')
  print(f'| {"trainable":34s} | {trainable:13,d} |')


if __name__ == '__main__':
  app.run(main)
