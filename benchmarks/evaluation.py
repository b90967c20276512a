r"""Evaluation throughput: images/s of the evaluator, side by side in one process.

  python -m benchmarks.evaluation --config configs/demo.py [--images 32]
  python -m benchmarks.evaluation --config configs/demo.py \
      --config.inference.protocol=zegclip_sliding_window --config.inference.short_side=0 \
      --config.inference.stride=42 --config.data.synthetic_size=160

Two predictors over the same parameters and images:
  per_window  the network called on one window at a time, its text queries recomputed in every call;
  batched     text queries once per evaluation (`Predictor.prepare`), windows in batches of
              inference.window_batch sharded over the local devices (the library's predictor).
Prints images/s of each (after one warm-up image, which compiles) and their ratio; the class maps
must agree. A pretrained CLIP named in the config is replaced by a random one of the same sizes.
"""
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from benchmarks.harness import benchmark_config, device_name
from hvl_jax.data import datasets
from hvl_jax.inference import evaluator as evaluator_lib
from hvl_jax.inference import predictor as predictor_lib
from hvl_jax.models import hvl

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/demo.py', 'Config file.')
_IMAGES = flags.DEFINE_integer('images', 32, 'Validation images timed per predictor.')


def per_window_predictor(config, model):
  """One window per call, the whole network (text encoder included) in every call."""
  prepare, scores = predictor_lib.network_scores(model, config.inference.mode)
  batched = predictor_lib.Predictor.from_config(config, model)
  return predictor_lib.Predictor(
      jax.jit(lambda params, images, valid: scores(prepare(params), images, valid)),
      num_classes=batched.num_classes, crop=batched.crop, stride=batched.stride,
      protocol=batched.protocol, short_side=batched.short_side, pad_multiple=batched.pad_multiple)


def images_per_second(predictor, params, images):
  prepared = predictor.prepare(params)
  predictor.predict(prepared, images[0])           # compiles
  t = time.perf_counter()
  maps = [predictor.predict(prepared, image).classes for image in images]
  return len(images) / (time.perf_counter() - t), maps


def main(argv):
  del argv
  config = benchmark_config(_CONFIG.value)
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  params = hvl.init_params(model, clip, jax.random.PRNGKey(config.seed), config.data.crop_size)
  source = datasets.make_sources(config)['val']
  images = [
      source[i]['image'] for i in evaluator_lib.process_share(min(_IMAGES.value, len(source)))
  ]
  old_rate, old_maps = images_per_second(per_window_predictor(config, model), params, images)
  new_rate, new_maps = images_per_second(predictor_lib.Predictor.from_config(config, model), params,
                                         images)
  agree = all(np.array_equal(a, b) for a, b in zip(old_maps, new_maps))
  print(
      f'device {device_name()}; config {config.data.name} crop {config.data.crop_size}, protocol '
      f'{config.inference.protocol}, images {images[0].shape[0]}x{images[0].shape[1]}, '
      f'{len(images)} images'
  )
  print(
      f'per_window {old_rate:.2f} images/s; batched {new_rate:.2f} images/s; ratio '
      f'{new_rate / old_rate:.2f}x; '
      f'class maps {"identical" if agree else "DIFFER"}')


if __name__ == '__main__':
  app.run(main)
