"""Training system: device equivalence, NaN skipping, resume after kill -9, checkpoint fallback,
evaluation, config errors."""
import functools
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from hvl_jax import checkpoint as ckpt_lib
from hvl_jax import evaluate, metrics, optim, sharding, train
from hvl_jax.data import datasets, pipeline
from hvl_jax.models.clip import normalize_images as clip_normalize
from tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def supervised_config(**kw):
  c = tiny_config(**kw)
  c.data.unlabeled_batch = 0
  c.loss.vl = 0.0
  return c


@functools.lru_cache(maxsize=None)
def setup(config_json):
  import ml_collections
  config = ml_collections.ConfigDict(eval(config_json))  # pylint: disable=eval-used
  model, clip, _ = train.build(config)
  tx_fn = lambda p: optim.make_optimizer(config, p, 10)
  state = train.create_state(config, model, clip, tx_fn, 64)
  return config, model, tx_fn(state.params), state


def batch_of(config, seed=0):
  sources = datasets.make_sources(config)
  return next(iter(pipeline.train_dataset(config, sources)))


def run_step(mesh, config, model, tx, state, batch, fsdp=False):
  state_sh = sharding.state_sharding(mesh, state, fsdp, min_size=1024)
  step = train.jit_train_step(config, model, tx, mesh, state_sh, donate=False)
  return step(jax.device_put(state, state_sh), sharding.global_batch(mesh, batch))


def test_two_devices_match_one_device():
  assert jax.device_count() == 2, 'tests run with 2 simulated CPU devices (conftest)'
  config, model, tx, state = setup(repr(supervised_config().to_dict()))
  batch = batch_of(config)
  one = Mesh(np.asarray(jax.devices()[:1]), ('data',))
  two = sharding.make_mesh()
  s1, m1 = run_step(one, config, model, tx, state, batch)
  s2, m2 = run_step(two, config, model, tx, state, batch)
  np.testing.assert_allclose(float(m1['total']), float(m2['total']), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-4),
               s1.params, s2.params)
  # FSDP: parameters sharded over the two devices, same result.
  s3, m3 = run_step(two, config, model, tx, state, batch, fsdp=True)
  sharded = [x for x in jax.tree.leaves(s3.params) if not x.sharding.is_fully_replicated]
  assert sharded, 'FSDP should shard the larger parameters'
  np.testing.assert_allclose(float(m1['total']), float(m3['total']), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-4),
               s1.params, s3.params)


def test_nan_batch_is_skipped_and_no_recompilation():
  config, model, tx, state = setup(repr(supervised_config().to_dict()))
  sources = datasets.make_sources(config)
  it = iter(pipeline.train_dataset(config, sources))
  mesh = sharding.make_mesh()
  state_sh = sharding.replicated(mesh, state)
  step = train.jit_train_step(config, model, tx, mesh, state_sh, donate=False)
  as_float = lambda b: dict(b, image_l=np.asarray(clip_normalize(b['image_l'])))
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
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), s.params, before)
  assert step._cache_size() == 1  # pylint: disable=protected-access


def test_confusion_and_miou_against_numpy(rng):
  label = rng.randint(0, 4, (3, 20, 20))
  label[0, :5] = 255
  pred = rng.randint(0, 4, (3, 20, 20))
  conf = np.asarray(metrics.confusion_matrix(jnp.asarray(pred), jnp.asarray(label), 4))
  ref = np.zeros((4, 4), np.int64)
  for g, p in zip(label.ravel(), pred.ravel()):
    if g != 255:
      ref[g, p] += 1
  np.testing.assert_array_equal(conf, ref)
  miou, per_class = metrics.mean_iou(conf)
  ious = [ref[c, c] / (ref[c].sum() + ref[:, c].sum() - ref[c, c]) for c in range(4)]
  np.testing.assert_allclose(per_class, ious)
  np.testing.assert_allclose(miou, np.mean(ious))
  # A class absent from both prediction and ground truth is NaN and excluded.
  conf2 = np.asarray([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
  miou2, per2 = metrics.mean_iou(conf2)
  assert np.isnan(per2[2]) and np.isclose(miou2, (5 / 8 + 3 / 6) / 2)


def test_evaluator_on_known_predictions(tmp_path, rng):
  config = supervised_config()
  source = datasets.make_sources(config)['val']
  labels = [source[i]['label'] for i in range(4)]

  class FixedSource:
    def __len__(self):
      return 4

    def __getitem__(self, i):
      return dict(image=np.zeros((64, 64, 3), np.uint8), label=labels[i], name=str(i))

  preds = [np.where(rng.rand(64, 64) < 0.7, l, rng.randint(0, 5, (64, 64))) for l in labels]
  class KnownPredictor:
    calls = iter(preds)

    def predict(self, params, image):
      return next(self.calls)

  ev = evaluate.Evaluator(config, KnownPredictor(), FixedSource(), [f'c{i}' for i in range(5)])
  results = ev.run(None, str(tmp_path), tag='known')
  inter = np.zeros(5)
  union = np.zeros(5)
  for p, l in zip(preds, labels):
    for c in range(5):
      inter[c] += ((p == c) & (l == c)).sum()
      union[c] += ((p == c) | (l == c)).sum()
  expected = np.mean([i / u for i, u in zip(inter, union) if u > 0])
  np.testing.assert_allclose(results['miou'], expected, rtol=1e-6)
  assert os.path.exists(tmp_path / 'eval_known.json') and os.path.exists(tmp_path / 'eval_known.txt')


def _main(workdir, steps, env, extra=()):
  cmd = [sys.executable, '-m', 'hvl_jax.main', '--config', 'tests/tiny_cli.py', '--workdir', str(workdir),
         f'--config.train.steps={steps}'] + list(extra)
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _final_params(workdir, config):
  _, model, tx, state = setup(repr(config.to_dict()))
  abstract = jax.eval_shape(lambda: state)
  restored, step = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False).restore(abstract)
  return restored, step


def test_kill_and_resume_is_bit_identical(tmp_path):
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0', PYTHONPATH=ROOT)
  steps = 6
  full = _main(tmp_path / 'full', steps, env)
  out, _ = full.communicate(timeout=900)
  assert full.returncode == 0, out
  assert 'mIoU' in out

  killed = _main(tmp_path / 'killed', steps, env)
  ckpt_dir = tmp_path / 'killed' / 'checkpoints'
  deadline = time.time() + 900
  while time.time() < deadline:
    if (ckpt_dir / '4').exists():
      break
    time.sleep(0.2)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert (ckpt_dir / '4').exists()
  resumed = _main(tmp_path / 'killed', steps, env)
  out2, _ = resumed.communicate(timeout=900)
  assert resumed.returncode == 0, out2
  assert 'Resumed from' in out2

  sys.path.insert(0, os.path.join(ROOT, 'tests'))
  import tiny_cli  # pylint: disable=g-import-not-at-top
  config = tiny_cli.get_config()
  a, sa = _final_params(tmp_path / 'full', config)
  b, sb = _final_params(tmp_path / 'killed', config)
  assert sa == sb == steps
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a.params, b.params)

  # A corrupt newest checkpoint falls back to the previous one with a warning.
  newest = ckpt_dir / str(steps)
  for root, _, files in os.walk(newest / 'state'):
    for f in files:
      with open(os.path.join(root, f), 'wb') as fh:
        fh.write(b'corrupt')
  _, model, tx, state = setup(repr(config.to_dict()))
  restored, step = ckpt_lib.Checkpointer(str(ckpt_dir), async_save=False).restore(jax.eval_shape(lambda: state))
  assert step == 4


def test_mistyped_config_field_is_rejected(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'hvl_jax.main', '--config', 'configs/demo.py', '--workdir',
                        str(tmp_path), '--config.optim.lrr=1'], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0 and 'lrr' in out.stderr
  out = subprocess.run([sys.executable, '-m', 'hvl_jax.main', '--config', 'configs/demo.py', '--workdir',
                        str(tmp_path), '--config.optim.lr=fast'], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode != 0 and 'optim.lr' in out.stderr


def test_host_initialisation_uses_xla_attention_on_gpu_machines(monkeypatch):
  # Parameters are initialised under sharding.on_host_cpu(); even where the default backend is a
  # GPU, ops run eagerly there must not pick the cuDNN kernel (it has no CPU lowering).
  from hvl_jax.models import attention   # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  monkeypatch.setattr(attention, '_cudnn_supports', lambda *_: True)
  q = jnp.zeros((1, 64, 2, 64), jnp.bfloat16)
  assert attention.select_implementation(q, q, None, False, 'auto') == 'cudnn'
  with sharding.on_host_cpu():
    assert attention.select_implementation(q, q, None, False, 'auto') == 'xla'
    assert jnp.ones(2).devices() == {jax.local_devices(backend='cpu')[0]}


def test_mask_budget_note_when_groups_span_devices():
  config = tiny_config()          # 4 labeled images per step, budget groups of 2
  assert config.data.labeled_batch == 4 and config.loss.budget_images == 2
  assert train.mask_budget_note(config, 1) is None and train.mask_budget_note(config, 2) is None
  assert 'loss.budget_images=2 does not divide the 1 labeled image(s)' in train.mask_budget_note(config, 4)
  config.train.grad_accum = 4     # one labeled image per micro-step
  assert train.mask_budget_note(config, 1) is not None
