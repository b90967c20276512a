"""Optimizer: AdamW with parameter groups, warm-up + poly schedule, clipping, NaN skipping."""
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hvl_jax.common import config_tree

# Leaves never weight-decayed besides biases and norms (all 1-D): embeddings and learned queries.
# Embeddings and tokens are not decayed (CLIP's and EVA02's position embeddings and class tokens
# among them), whatever their rank.
NO_DECAY_NAMES = ('embedding', 'class_embedding', 'pos_embed', 'cls_token', 'prompt', 'query_feat',
                  'query_embed', 'level_embed', 'class_query_pos')


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """`optim`: AdamW (lr, weight_decay, b1, b2; the backbone at lr x backbone_lr_mult), gradients
  clipped at a global norm of clip_norm, linear warm-up over warmup_steps then poly decay."""
  lr: float = 1e-4
  weight_decay: float = 0.01
  backbone_lr_mult: float = 0.1
  clip_norm: float = 0.01
  warmup_steps: int = 1500
  poly_power: float = 0.9
  b1: float = 0.9
  b2: float = 0.999


def warmup_poly(count, total_steps, o: OptimConfig):
  """The learning rate after `count` updates of a run of `total_steps`: linear warm-up to o.lr
  over o.warmup_steps, then poly(o.poly_power) decay to 0 at total_steps.

  optax's `join_schedules` of a linear and a polynomial schedule, for a traced `total_steps`.
  XLA compiles optax's division by a constant length as a product with its reciprocal; the
  reciprocal is written out here so that the arithmetic is optax's. The base is kept at >= 0:
  at count = total_steps the rounded product can exceed 1.
  """
  warmup = jnp.minimum(o.warmup_steps, jnp.maximum(total_steps - 1, 0))
  up_steps, down_steps = jnp.maximum(warmup, 1), jnp.maximum(total_steps - warmup, 1)
  up = -o.lr * (1 - jnp.clip(count, 0, up_steps) * (1 / up_steps)) + o.lr
  left = 1 - jnp.clip(count - warmup, 0, down_steps) * (1 / down_steps)
  return jnp.where(count < warmup, up, o.lr * jnp.maximum(left, 0.0)**o.poly_power)


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  """`warmup_poly` of a run of `total_steps`, as a function of the update count."""
  o = config_tree.build(OptimConfig, config.optim, 'optim')
  return lambda count: warmup_poly(count, total_steps, o)


class ScheduleState(NamedTuple):
  """count: updates applied; total_steps: the schedule's length. The length is state, not a
  constant of the compiled step, so runs that differ only in train.steps share one program."""
  count: jax.Array
  total_steps: jax.Array


def scale_by_run_schedule(o: OptimConfig, total_steps: int,
                          mult: float) -> optax.GradientTransformation:
  """optax.scale_by_learning_rate of `warmup_poly` x mult, with the run's length in the state."""

  def init(params):
    del params
    return ScheduleState(jnp.zeros([], jnp.int32), jnp.asarray(total_steps, jnp.int32))

  def update(updates, state, params=None):
    del params
    step_size = -1 * (warmup_poly(state.count, state.total_steps, o) * mult)
    updates = jax.tree.map(lambda g: jnp.array(step_size, dtype=g.dtype) * g, updates)
    return updates, ScheduleState(optax.safe_increment(state.count), state.total_steps)

  return optax.GradientTransformation(init, update)


def with_total_steps(opt_state, total_steps: int):
  """`opt_state` with its schedules' length set to `total_steps` (a resumed run whose
  train.steps changed follows the new schedule, as a fresh one would). Each schedule gets an
  array of its own: the train step donates them one by one."""
  is_schedule = lambda x: isinstance(x, ScheduleState)
  set_length = lambda x: x._replace(total_steps=jnp.asarray(total_steps, jnp.int32))
  return jax.tree.map(lambda x: set_length(x) if is_schedule(x) else x, opt_state,
                      is_leaf=is_schedule)


def param_groups(params):
  """Per leaf: '<backbone|head>/<decay|no_decay>'.

  The backbone trains at lr x backbone_lr_mult; weights of 2+ dims are decayed, biases, norms
  and the NO_DECAY_NAMES leaves are not.
  """
  def group(path, leaf):
    top = 'backbone' if path[0].key == 'backbone' else 'head'
    name = str(path[-1].key) if hasattr(path[-1], 'key') else str(path[-1])
    decay = leaf.ndim >= 2 and name not in NO_DECAY_NAMES
    return f'{top}/{"decay" if decay else "no_decay"}'
  return jax.tree_util.tree_map_with_path(group, params)


class GroupVectors:
  """Ravels a parameter-shaped tree into {group: 1-D vector} and back (leaf order kept)."""

  def __init__(self, labels):
    leaves, self.treedef = jax.tree.flatten(labels)
    self.labels = leaves
    self.groups = sorted(set(leaves))

  def ravel(self, tree):
    leaves = self.treedef.flatten_up_to(tree)
    return {g: jnp.concatenate([x.reshape(-1) for x, l in zip(leaves, self.labels) if l == g])
            for g in self.groups}

  def unravel(self, vectors, like):
    """`vectors` back to the structure, shapes and dtypes of `like`."""
    like_leaves = self.treedef.flatten_up_to(like)
    offsets = {g: 0 for g in self.groups}
    out = []
    for x, g in zip(like_leaves, self.labels):
      out.append(vectors[g][offsets[g]:offsets[g] + x.size].reshape(x.shape).astype(x.dtype))
      offsets[g] += x.size
    return self.treedef.unflatten(out)


def over_group_vectors(inner: optax.GradientTransformation,
                       vectors: GroupVectors) -> optax.GradientTransformation:
  """Runs `inner` on {group: vector} instead of the ~1000-leaf parameter tree.

  Like `optax.flatten`, but one vector per parameter group so that `inner` can still treat
  groups differently (`multi_transform` over the group names). Per-leaf optimizer updates
  made the optimizer alone a third of the full step's compile time.
  """

  def init(params):
    return inner.init(vectors.ravel(params))

  def update(updates, state, params=None):
    flat_params = None if params is None else vectors.ravel(params)
    new, state = inner.update(vectors.ravel(updates), state, flat_params)
    return vectors.unravel(new, updates), state

  return optax.GradientTransformation(init, update)


def make_optimizer(config, params, total_steps: int) -> optax.GradientTransformation:
  """The full transformation for the trainable `params` tree (see `over_group_vectors`), with
  train.grad_accum micro-steps per update."""
  o = config_tree.build(OptimConfig, config.optim, 'optim')

  def adamw(group):
    mult = o.backbone_lr_mult if group.startswith('backbone/') else 1.0
    decay = o.weight_decay if group.endswith('/decay') else 0.0
    return optax.chain(optax.scale_by_adam(o.b1, o.b2), optax.add_decayed_weights(decay),
                       scale_by_run_schedule(o, total_steps, mult))

  vectors = GroupVectors(param_groups(params))
  tx = optax.chain(
      optax.clip_by_global_norm(o.clip_norm),
      optax.multi_transform({g: adamw(g) for g in vectors.groups}, {g: g for g in vectors.groups}))
  # A non-finite gradient skips the update (counted in the state); the loop stops after
  # train.max_nonfinite in a row.
  tx = optax.apply_if_finite(tx, max_consecutive_errors=2 ** 30)
  if config.train.grad_accum > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=config.train.grad_accum)
  return over_group_vectors(tx, vectors)


def micro_step(opt_state) -> jax.Array:
  """Index of the next micro-step within the optimizer step (0 without gradient accumulation)."""
  if isinstance(opt_state, optax.MultiStepsState):
    return opt_state.mini_step
  return jnp.zeros((), jnp.int32)


def nonfinite_counts(opt_state):
  """(consecutive, total) skipped updates from the apply_if_finite state inside `opt_state`."""
  state = opt_state.inner_opt_state if isinstance(opt_state, optax.MultiStepsState) else opt_state
  return state.notfinite_count, state.total_notfinite
