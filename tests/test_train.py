"""Training system in-process: device and FSDP equivalence, NaN skipping and no recompilation,
the mask-budget note, host initialisation. The command-line lifecycle (preemption, kill -9,
resume, checkpoint fallback) is in tests/test_cli.py."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from hvl_jax.common import sharding
from hvl_jax.common import state as state_lib
from hvl_jax.data import datasets, pipeline
from hvl_jax.models import hvl
from hvl_jax.models.backbones.clip import normalize_images as clip_normalize
from hvl_jax.training import optim
from hvl_jax.training import trainer
from tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def supervised_config(**kw):
  c = tiny_config(**kw)
  c.data.unlabeled_batch = 0
  c.loss.vision_language.weight = 0.0
  return c


@functools.lru_cache(maxsize=None)
def setup(config_json):
  import ml_collections
  config = ml_collections.ConfigDict(eval(config_json))  # pylint: disable=eval-used
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  tx_fn = lambda p: optim.make_optimizer(config, p, 10)
  state = state_lib.create_state(config, model, clip, tx_fn, 64)
  return config, model, tx_fn(state.params), state


def batch_of(config, seed=0):
  sources = datasets.make_sources(config)
  return as_float(next(iter(pipeline.train_dataset(config, sources))))


def as_float(batch):
  """Labeled images CLIP-normalised on the host (float images can carry NaN; the two tests that
  step on 2 devices then share one compiled program)."""
  return dict(batch, image_l=np.asarray(clip_normalize(batch['image_l'])))


def run_step(mesh, config, model, tx, state, batch, fsdp=False):
  state_sh = sharding.state_sharding(mesh, state, fsdp, min_size=1024)
  step = trainer.jit_train_step(config, model, tx, mesh, state_sh, donate=False)
  return step(jax.device_put(state, state_sh), sharding.global_batch(mesh, batch))


@pytest.mark.slow
def test_two_devices_match_one_device():
  assert jax.device_count() == 2, 'tests run with 2 simulated CPU devices (conftest)'
  config, model, tx, state = setup(repr(supervised_config().to_dict()))
  batch = batch_of(config)
  one = Mesh(np.asarray(jax.devices()[:1]), ('data',))
  two = sharding.make_mesh()
  s1, m1 = run_step(one, config, model, tx, state, batch)
  s2, m2 = run_step(two, config, model, tx, state, batch)
  np.testing.assert_allclose(float(m1['total']), float(m2['total']), rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-4),
      s1.params, s2.params)
  # FSDP: parameters sharded over the two devices, same result.
  s3, m3 = run_step(two, config, model, tx, state, batch, fsdp=True)
  sharded = [x for x in jax.tree.leaves(s3.params) if not x.sharding.is_fully_replicated]
  assert sharded, 'FSDP should shard the larger parameters'
  np.testing.assert_allclose(float(m1['total']), float(m3['total']), rtol=1e-5)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-4),
      s1.params, s3.params)


@pytest.mark.slow
def test_the_step_makes_the_strong_views_from_its_state():
  """The pipeline ships weak views only; the step makes the strong ones from its state's RNG, so
  the same state and batch give the same step (a resumed run repeats it bit for bit)."""
  config, model, tx, state = setup(repr(tiny_config().to_dict()))
  batch = next(iter(pipeline.train_dataset(config, datasets.make_sources(config))))
  assert 'image_w' in batch and 'image_s1' not in batch
  step = jax.jit(trainer.bind_train_step(config, model, tx))
  (s1, m1), (s2, m2) = step(state, batch), step(state, batch)
  assert float(m1['semi_s1']) >= 0 and np.isfinite(float(m1['total']))
  for a, b in zip(jax.tree.leaves((s1.params, m1)), jax.tree.leaves((s2.params, m2))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_nan_batch_is_skipped_and_no_recompilation():
  config, model, tx, state = setup(repr(supervised_config().to_dict()))
  sources = datasets.make_sources(config)
  it = iter(pipeline.train_dataset(config, sources))
  mesh = sharding.make_mesh()
  state_sh = sharding.replicated(mesh, state)
  step = trainer.jit_train_step(config, model, tx, mesh, state_sh, donate=False)
  s = jax.device_put(state, state_sh)
  for _ in range(3):      # new data every step, same shapes: one compilation
    s, m = step(s, sharding.global_batch(mesh, as_float(next(it))))
  assert step._cache_size() == 1  # pylint: disable=protected-access
  assert int(m['nonfinite_total']) == 0
  bad = as_float(next(it))
  bad['image_l'] = np.full(bad['image_l'].shape, np.nan, np.float32)
  before = jax.device_get(s.params)
  s, m = step(s, sharding.global_batch(mesh, bad))
  assert not np.isfinite(float(m['total']))
  assert int(m['nonfinite_consecutive']) == 1 and int(m['nonfinite_total']) == 1
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), s.params,
               before)
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_host_initialisation_uses_xla_attention_on_gpu_machines(monkeypatch):
  # Parameters are initialised under sharding.on_host_cpu(); even where the default backend is a
  # GPU, ops run eagerly there must not pick the cuDNN kernel (it has no CPU lowering).
  from hvl_jax.ops import attention   # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  monkeypatch.setattr(attention, '_cudnn_supports', lambda *_: True)
  q = jnp.zeros((1, 64, 2, 64), jnp.bfloat16)
  assert attention.select_implementation(q, q, None, False, 'auto') == 'cudnn'
  with sharding.on_host_cpu():
    assert attention.select_implementation(q, q, None, False, 'auto') == 'xla'
    assert jnp.ones(2).devices() == {jax.local_devices(backend='cpu')[0]}


def test_mask_budget_note_when_groups_span_devices():
  config = tiny_config()          # 4 labeled images per step, budget groups of 2
  assert config.data.labeled_batch == 4 and config.loss.supervised.budget_images == 2
  assert trainer.mask_budget_note(config, 1) is None and trainer.mask_budget_note(config, 2) is None
  note = trainer.mask_budget_note(config, 4)
  assert 'loss.supervised.budget_images=2 does not divide the 1 labeled image(s)' in note
  config.train.grad_accum = 4     # one labeled image per micro-step
  assert trainer.mask_budget_note(config, 1) is not None
