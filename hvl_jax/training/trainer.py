"""Training loop: `train_and_evaluate(config, workdir)`.

The step is a pure function `train_step(state, batch)` jitted over a device
mesh ('data' axis: batch sharded, parameters replicated) with the state
donated. The global batch (labeled_batch + unlabeled_batch) defines the recipe;
`train.grad_accum` splits it into micro-batches on small devices.
"""
import dataclasses
import functools
import json
import time
from typing import Any, Dict, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hvl_jax.common import checkpoint as ckpt_lib
from hvl_jax.common import compilation_cache
from hvl_jax.common import config_io
from hvl_jax.common import config_tree
from hvl_jax.common import progress as progress_lib
from hvl_jax.common import sharding
from hvl_jax.common import state as state_lib
from hvl_jax.common import storage
from hvl_jax.data import datasets, device_augment, pipeline
from hvl_jax.inference import evaluator as evaluator_lib
from hvl_jax.inference import visualize
from hvl_jax.models import hvl
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.training import objective
from hvl_jax.training import optim
from hvl_jax.training import preemption
from hvl_jax.training.tensorboard import SummaryWriter


def normalize_batch(batch: Dict[str, jax.Array]) -> objective.Batch:
  """uint8 images -> CLIP-normalised float32 (on device); float images are taken as normalised."""
  get = lambda k, like: batch[k] if k in batch else jnp.zeros(
      (0,) + batch[like].shape[1:], batch[like].dtype)
  norm = lambda x: clip_lib.normalize_images(x) if x.dtype == jnp.uint8 else x.astype(jnp.float32)
  images = {k: norm(get(k, 'image_l')) for k in ('image_l', 'image_w', 'image_s1', 'image_s2')}
  return objective.Batch(images['image_l'], batch['label_l'], images['image_w'], images['image_s1'],
                         images['image_s2'],
                         get('box1', 'label_l').astype(bool),
                         get('box2', 'label_l').astype(bool),
                         get('valid_u', 'label_l').astype(bool), batch.get('label_u'))


# The strong views' key: the micro-step's key folded with this (the objective splits the key
# itself).
STRONG_VIEW_KEY_FOLD = 0x5757


def step_inputs(batch: Dict[str, jax.Array], rng,
                strong: Optional[device_augment.StrongViewConfig]):
  """The objective's inputs from a batch as the pipeline ships it: the strong views made from
  the weak ones with the step's key where the batch has none (`strong`: how), then normalised."""
  if strong is not None and 'image_w' in batch and 'image_s1' not in batch:
    key = jax.random.fold_in(rng, STRONG_VIEW_KEY_FOLD)
    batch = {**batch, **device_augment.make_strong_views(batch['image_w'], key, strong)}
  return normalize_batch(batch)


def train_step(state: state_lib.TrainState, batch, *, model, tx, loss: objective.ObjectiveConfig,
               grad_accum: int = 1, t_clip=None,
               strong: Optional[device_augment.StrongViewConfig] = None):
  """One micro-step: loss, gradients w.r.t. the trainable params, optimizer update, EMA.

  With grad_accum = k (train.grad_accum) the optimizer applies the mean gradient every k-th
  micro-step; `state.step` (optimizer steps) advances then, and so does the EMA teacher
  (loss.consistency.ema_decay > 0). t_clip: (K, E) `fixed_text_embeddings` of the frozen text
  encoder, computed once per start (`fixed_text_embeddings`); None computes them in the step.
  strong: how the step makes the strong views of a batch that has only weak ones
  (data.strong_view.where='device').
  """
  ema_decay = loss.consistency.ema_decay
  rng = jax.random.fold_in(state.rng, state.step * grad_accum + optim.micro_step(state.opt_state))
  inputs = step_inputs(batch, rng, strong)
  teacher = None
  if ema_decay > 0:
    teacher = {**state.ema_params, **state.frozen}

  def loss_fn(params):
    return objective.compute_loss(model, {**params, **state.frozen}, inputs, rng, loss, teacher,
                                  t_clip)

  (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  stepped = optim.micro_step(opt_state) == 0     # this micro-step completed an optimizer step
  ema = state.ema_params
  if ema_decay > 0:
    ema = jax.tree.map(lambda e, p: jnp.where(stepped, ema_decay * e + (1 - ema_decay) * p, e), ema,
                       params)
  consecutive, total = optim.nonfinite_counts(opt_state)
  metrics = dict(terms, grad_norm=optax.tree.norm(grads), nonfinite_consecutive=consecutive,
                 nonfinite_total=total)
  new_state = state.replace(step=state.step + stepped.astype(state.step.dtype), params=params,
                            opt_state=opt_state, ema_params=ema)
  return new_state, metrics


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """`train`: the schedule's length (steps > 0 overrides epochs), grad_accum micro-steps per
  step, logging, checkpoints (every ckpt_every steps, the keep_checkpoints newest kept),
  parameters and optimizer state sharded over the devices (fsdp, ZeRO-3 style), an evaluation
  every eval_every steps (0 = at the end only), a stop after max_nonfinite non-finite losses in a
  row, and a bucket that does not answer for storage_timeout_s ending the run
  (hvl_jax/common/checkpoint.py)."""
  epochs: int = 80
  steps: int = -1
  grad_accum: int = 1
  log_every: int = 50
  ckpt_every: int = 1000
  keep_checkpoints: int = 3
  fsdp: bool = False
  eval_every: int = 0
  max_nonfinite: int = 10
  storage_timeout_s: float = 600.0


def bind_train_step(config, model, tx, t_clip=None):
  """`train_step` with the config's static settings (read here, not while tracing) and t_clip
  bound."""
  return functools.partial(train_step, model=model, tx=tx,
                           loss=objective.objective_config(config, model.cfg),
                           grad_accum=config.train.grad_accum, t_clip=t_clip,
                           strong=strong_view_config(config))


def strong_view_config(config) -> Optional[device_augment.StrongViewConfig]:
  """How the step makes the strong views (`data.strong_view`), or None where the host makes them."""
  strong = config_tree.build(device_augment.StrongViewConfig, config.data.strong_view,
                             'data.strong_view')
  return strong if strong.where == 'device' else None


def fixed_text_embeddings(model, state: state_lib.TrainState) -> np.ndarray:
  """t^CLIP (K, E) of the state's frozen text encoder, on the host: a constant of the step."""
  fn = jax.jit(lambda frozen: model.apply({'params': frozen}, method=hvl.HVL.fixed_text_embeddings))
  return np.asarray(fn(state.frozen))


def jit_train_step(config, model, tx, mesh, state_sharding, donate: bool = True, t_clip=None):
  """`train_step` jitted over the mesh: batch sharded on 'data', state as `state_sharding`."""
  return jax.jit(bind_train_step(config, model, tx, t_clip),
                 in_shardings=(state_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=(state_sharding, None), donate_argnums=0 if donate else ())


# The step's own metrics, kept in TensorBoard and metrics.jsonl but not on the console line.
STEP_BOOKKEEPING = ('grad_norm', 'nonfinite_consecutive', 'nonfinite_total', 'lr', 'images_per_sec')


class ProgressLogger:
  """Console line every train.log_every steps (step/total, loss terms, lr, img/s, ETA),
  TensorBoard scalars and a metrics.jsonl file (process 0 only)."""

  def __init__(self, workdir, total_steps, images_per_step, lr_fn, storage_timeout_s=600):
    self.total, self.images, self.lr_fn = total_steps, images_per_step, lr_fn
    self.main = jax.process_index() == 0
    self.writer = SummaryWriter(storage.join(workdir, 'tensorboard')) if self.main else None
    self.jsonl = (storage.LineLog(storage.join(workdir, 'metrics.jsonl'), storage_timeout_s)
                  if self.main else None)
    self.rate = progress_lib.Rate(total_steps)

  def log(self, step: int, metrics: Dict[str, Any]):
    """Every term the step returns is printed, written to TensorBoard and to metrics.jsonl."""
    self.rate.mark(step)
    steps_per_s = self.rate.per_second(step)
    metrics = {k: float(v) for k, v in metrics.items()}
    metrics['lr'] = float(self.lr_fn(step))
    if steps_per_s == steps_per_s:      # no rate before the second log line
      metrics['images_per_sec'] = steps_per_s * self.images
    if not self.main:
      return
    shown = ' '.join(
        f'{k}={v:.4g}' for k, v in sorted(metrics.items()) if k not in STEP_BOOKKEEPING)
    img_s = f'{metrics["images_per_sec"]:.1f}' if 'images_per_sec' in metrics else '--'
    print(
        f'[{step}/{self.total}] {shown} lr={metrics["lr"]:.3g} img/s={img_s} ETA '
        f'{self.rate.eta(step)}',
        flush=True)
    for k, v in metrics.items():
      self.writer.add_scalar(f'train/{k}', v, step)
    self.jsonl.write(json.dumps(dict(step=step, **metrics)) + '\n')
    self.jsonl.flush()

  def predictions(self, tag: str, samples, step: int):
    """Image | prediction | ground truth strips (palette colours) for a few eval images."""
    if not self.main or not samples:
      return
    for i, (image, pred, label) in enumerate(samples):
      self.writer.add_image(f'{tag}/{i}', visualize.strip(image, pred, label), step,
                            dataformats='HWC')

  def scalars(self, prefix: str, values: Dict[str, float], step: int):
    if self.main:
      for k, v in values.items():
        self.writer.add_scalar(f'{prefix}/{k}', v, step)
      self.writer.flush()

  def close(self):
    if self.main:
      self.writer.close()
      self.jsonl.close()


def mask_budget_note(config, devices: int) -> Optional[str]:
  """A note when loss.supervised.budget_images does not divide the labeled images per device and
  micro-step: the criterion's mask-budget groups then span devices (correct, but their data crosses
  them)."""
  per_device = config.data.labeled_batch // config.train.grad_accum // devices
  group = config.loss.supervised.budget_images
  if per_device < 1 or per_device % group == 0:
    return None
  return (
      f'Note: loss.supervised.budget_images={group} does not divide the {per_device} labeled '
      f'image(s) per device '
      'and micro-step, so mask-budget groups span devices; '
      '--config.loss.supervised.budget_images=1 '
      ''
      ''
      ''
      'keeps them local.'
  )


def compiled(jitted, *args, what: str = 'the train step'):
  """`jitted` compiled for `args`, with a console line saying whether it was compiled or loaded
  from JAX's compilation cache, and how long that took (tracing and lowering included)."""
  print(f'Compiling {what} ...', flush=True)
  t0 = time.time()
  with compilation_cache.hits() as loaded:
    executable = jitted.lower(*args).compile()
  done = f'Loaded {what} from the compilation cache' if loaded else f'Compiled {what}'
  print(f'{done} in {time.time() - t0:.1f} s', flush=True)
  return executable


def train_and_evaluate(config, workdir: str) -> Dict[str, Any]:
  """Trains (resuming from the workdir if possible), then evaluates; returns the final eval results.
  The workdir records the config (config_train.json, which `Segmenter.load` reads)."""
  config = datasets.resolved(config)
  config_io.write(config, workdir, 'train')
  train = config_tree.build(TrainConfig, config.train, 'train')
  mesh = sharding.make_mesh()
  names = datasets.class_names(config)
  model, clip = hvl.build_model(config, names)
  sources = datasets.make_sources(config)
  total = pipeline.total_steps(config, sources)
  accum = train.grad_accum
  lr_fn = optim.learning_rate_schedule(config, total)
  tx_fn = lambda params: optim.make_optimizer(config, params, total)
  image_size = config.data.crop_size

  abstract = state_lib.abstract_state(config, model, clip, tx_fn)
  tx = tx_fn(abstract.params)
  state_sharding = sharding.state_sharding(mesh, abstract, train.fsdp)
  data = pipeline.train_dataset(config, sources, workdir)
  data_iter = iter(data)

  checkpoints = ckpt_lib.Checkpointer(storage.join(workdir, 'checkpoints'),
                                      train.keep_checkpoints,
                                      storage_timeout_s=train.storage_timeout_s)
  state = restore_or_init(config, checkpoints, abstract, data_iter,
                          lambda: state_lib.create_state(config, model, clip, tx_fn, image_size))
  state = jax.device_put(state.replace(opt_state=optim.with_total_steps(state.opt_state, total)),
                         state_sharding)
  start = int(state.step)
  logging.info(
      'Parameters:\n%s',
      '\n'.join(f'  {k:34s} {n:>13,d}'
                for k, n in state_lib.parameter_counts(state_lib.full_params(state)).items()))
  print(
      f'Training {total} steps ({accum} micro-batch{"es" if accum > 1 else ""} each) from step '
      f'{start} on {jax.device_count()} device(s); workdir {workdir}', flush=True)

  note = mask_budget_note(config, mesh.devices.size)
  if note:
    print(note, flush=True)
  step_fn = jit_train_step(config, model, tx, mesh, state_sharding,
                           t_clip=fixed_text_embeddings(model, state))
  progress = ProgressLogger(workdir, total, config.data.labeled_batch + config.data.unlabeled_batch,
                            lr_fn, train.storage_timeout_s)
  evaluations = evaluator_lib.Evaluations(config, model, clip, sources['val'], names)
  state, metrics = train_loop(train, state, step_fn, data_iter, mesh, checkpoints, progress,
                              evaluations, workdir, total)
  if start < total:       # a finished run started again only evaluates
    checkpoints.save(total, state, data_iter, force=True)
  checkpoints.wait()
  extra = {}
  if metrics is not None and 'pseudo_confident_fraction' in metrics:   # the last step's
    extra['train_pseudo_confident_fraction'] = float(metrics['pseudo_confident_fraction'])
  done = evaluations.run_all(state_lib.full_params(state), workdir, 'final', extra=extra,
                             title=f'The trained network at step {total}')
  log_evaluations(progress, done, total)
  progress.close()
  checkpoints.close()
  return next((done[name].results for name in evaluations.periodic()), {})


def log_evaluations(progress, done: Dict[str, evaluator_lib.Evaluation], step: int):
  """Each evaluation's mIoU (where it has one) and image strips to TensorBoard."""
  for name, out in done.items():
    if 'miou' in out.results:
      progress.scalars(f'eval/{name}', {'miou': out.results['miou']}, step)
    progress.predictions(f'eval/{name}', out.samples, step)


def train_loop(train: TrainConfig, state, step_fn, data_iter, mesh, checkpoints, progress,
               evaluations, workdir: str, total: int):
  """Optimizer steps state.step + 1 ... `total`: logging, non-finite checks, checkpoints,
  preemption and periodic evaluation. Returns (state, the last logged metrics)."""
  accum, start = train.grad_accum, int(state.step)
  best = read_best(workdir)
  metrics = None
  watcher = preemption.Watcher()
  try:
    for step in range(start + 1, total + 1):
      for _ in range(accum):
        batch = sharding.global_batch(mesh, next(data_iter))
        if metrics is None:     # the first micro-step of this start
          step_fn = compiled(step_fn, state, batch)
        state, metrics = step_fn(state, batch)
      if step % train.log_every == 0 or step == total:
        metrics = jax.device_get(metrics)
        progress.log(step, metrics)
        if metrics['nonfinite_consecutive'] >= train.max_nonfinite:
          raise FloatingPointError(
              f'{int(metrics["nonfinite_consecutive"])} non-finite losses in a row at '
              f'step {step}: stopping (train.max_nonfinite={train.max_nonfinite})')
      preempted = step != total and watcher.reached(step)
      if (step % train.ckpt_every == 0 and step != total) or preempted:
        checkpoints.save(step, state, data_iter, force=preempted)
      if preempted:
        checkpoints.wait()
        checkpoints.close()
        progress.close()
        raise preemption.Preempted(step, checkpoints.directory)
      if train.eval_every and step % train.eval_every == 0 and step != total:
        best = periodic_eval(evaluations, state, step, workdir, best, progress,
                             checkpoints.timeout_s)
  finally:
    watcher.close()
  return state, metrics


def restore_or_init(config, checkpoints, abstract, data_iter, init_fn):
  """workdir checkpoint -> config.resume -> config.init (weights only) -> scratch."""
  if checkpoints.steps():
    state, step = checkpoints.restore(abstract, data_iter)
    print(f'Resumed from {checkpoints.directory} at step {step}', flush=True)
    return state
  if config.resume:
    source = ckpt_lib.Checkpointer(config.resume, async_save=False)
    state, step = source.restore(abstract, data_iter)
    print(f'Resumed from config.resume={config.resume} at step {step}', flush=True)
    return state
  state = init_fn()
  if config.init:
    source = ckpt_lib.Checkpointer(config.init, async_save=False)
    loaded, step = source.restore(abstract)
    state = state.replace(params=loaded.params, frozen=loaded.frozen,
                          ema_params=loaded.params if state.ema_params is not None else None)
    print(f'Initialised weights from config.init={config.init} (step {step})', flush=True)
  return state


def read_best(workdir):
  path = storage.join(workdir, 'best.json')
  if storage.exists(path):
    return json.loads(storage.read_text(path))
  return {'miou': -1.0, 'step': 0}


def periodic_eval(evaluations, state, step, workdir, best, progress, storage_timeout_s: float):
  """Runs the periodic evaluations; the mIoU of 'val' (else of the first) keeps the best
  checkpoint in workdir/best."""
  names = evaluations.periodic()
  if not names:
    return best
  params = state_lib.full_params(state)
  done = {name: evaluations.run(name, params, workdir, f'step_{step}',
                                title=f'The network at step {step}') for name in names}
  log_evaluations(progress, done, step)
  results = done[names[0]].results
  if results['miou'] > best['miou']:
    best = {'miou': results['miou'], 'step': step}
    keeper = ckpt_lib.Checkpointer(storage.join(workdir, 'best'), keep=1, async_save=False,
                                   storage_timeout_s=storage_timeout_s)
    keeper.save(step, state, force=True)
    keeper.close()
    if jax.process_index() == 0:
      storage.write_text(storage.join(workdir, 'best.json'), json.dumps(best))
  return best
