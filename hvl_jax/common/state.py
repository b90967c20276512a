"""The train state: what a checkpoint holds besides the data iterator.

`create_state` draws a fresh state on the host CPU (the optimizer is the caller's `tx_fn`);
`restore_params` reads the parameters that evaluation and prediction use from a checkpoint,
without the optimizer state (nothing of training is built for it). `TrainState.step` counts
optimizer steps (a step of `train.grad_accum` micro-steps), as do the checkpoint numbers, logs
and eval files.
"""
import os
from typing import Any, Dict, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.common import checkpoint as ckpt_lib
from hvl_jax.common import sharding
from hvl_jax.common import storage
from hvl_jax.common.errors import CheckpointError
from hvl_jax.models import hvl


@flax.struct.dataclass
class TrainState:
  """step: optimizer steps taken; params: trainable parameters; frozen: text/reference encoders,
  logit scale (and the backbone when model.freeze_backbone); opt_state: optimizer state (with
  the micro-step index inside a step when train.grad_accum > 1); ema_params: teacher (or None);
  rng: base key."""
  step: jax.Array
  params: Any
  frozen: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array


def frozen_keys(model: hvl.HVL) -> Tuple[str, ...]:
  return hvl.FROZEN + (('backbone',) if model.cfg.freeze_backbone else ())


def split_params(params, model: hvl.HVL):
  """(trainable, frozen) top-level subtrees of the full parameter dict of `model`."""
  keys = frozen_keys(model)
  return ({k: v for k, v in params.items() if k not in keys},
          {k: v for k, v in params.items() if k in keys})


def create_state(config, model, clip, tx_fn, image_size: int) -> TrainState:
  """Fresh state on the host CPU: pretrained CLIP weights, random heads."""
  with sharding.on_host_cpu():
    rng = jax.random.PRNGKey(config.seed)
    params = hvl.init_params(model, clip, jax.random.fold_in(rng, 1), image_size)
    trainable, frozen = split_params(params, model)
    tx = tx_fn(trainable)
    ema = jax.tree.map(jnp.copy, trainable) if config.loss.consistency.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=trainable, frozen=frozen,
                      opt_state=tx.init(trainable), ema_params=ema, rng=jax.random.fold_in(rng, 2))


def abstract_state(config, model, clip, tx_fn) -> TrainState:
  """Shapes and dtypes of `create_state` (nothing is allocated)."""
  return jax.eval_shape(lambda: create_state(config, model, clip, tx_fn, config.data.crop_size))


def full_params(state: TrainState):
  """The parameters evaluation uses: the EMA teacher when there is one."""
  params = state.ema_params if state.ema_params is not None else state.params
  return {**params, **state.frozen}


def restore_params(config, model, clip, checkpoint: str):
  """Evaluation parameters from `checkpoint`: a checkpoint directory (its newest readable step)
  or one step directory (`.../checkpoints/300`). Reads the trained parameters (the EMA teacher's
  where there is one) and the frozen ones, nothing else. Returns (params, the step directory)."""
  directory, step = storage.path(checkpoint), None
  if (directory / 'state').is_dir():
    directory, step = directory.parent, int(directory.name)
  if not directory.is_dir():
    raise CheckpointError(
        f'{checkpoint}: no such checkpoint directory (pass --checkpoint or train first)')
  shapes = jax.eval_shape(
      lambda: hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size))
  trainable, frozen = split_params(shapes, model)
  teacher = 'ema_params' if config.loss.consistency.ema_decay > 0 else 'params'
  parts, step = ckpt_lib.Checkpointer(directory, async_save=False).restore_parts(
      {teacher: trainable, 'frozen': frozen}, step=step)
  print(f'Restored {directory} step {step}', flush=True)
  return {**parts[teacher], **parts['frozen']}, os.fspath(directory / str(step))


def parameter_counts(params) -> Dict[str, int]:
  """{component: parameter count} of a full parameter (or shape) tree: backbone, pyramid, text
  encoder, prompt, HTQG, pixel decoder, PTRM, DQTD, reference encoder."""
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  pd, htqg = params['pixel_decoder'], params.get('htqg', {})
  return {
      'backbone E_I': count(params['backbone']),
      'simple feature pyramid': count(params['pyramid']),
      'text encoder E_T (frozen)': count(params['text_encoder']),
      'prompt (learnable tokens)': count(htqg.get('prompt', {})),
      'HTQG (level MLPs + Phi)': count({k: v for k, v in htqg.items() if k != 'prompt'}),
      'pixel decoder (MSDeformAttn)': count(
          {k: v for k, v in pd.items() if not k.startswith('ptrm_')}),
      'PTRM': count({k: v for k, v in pd.items() if k.startswith('ptrm_')}),
      'DQTD (transformer decoder)': count(params['decoder']),
      'reference encoder E_I^0 (frozen)': count(params['reference_encoder']),
  }
