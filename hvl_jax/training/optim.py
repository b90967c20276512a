"""Optimizer: AdamW with parameter groups, warm-up + poly schedule, clipping, NaN skipping."""
import dataclasses

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


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  """Linear warm-up to optim.lr over warmup_steps, then poly(power) decay to 0 at total_steps."""
  o = config_tree.build(OptimConfig, config.optim, 'optim')
  warmup = min(o.warmup_steps, max(total_steps - 1, 0))
  return optax.join_schedules([
      optax.linear_schedule(0.0, o.lr, max(warmup, 1)),
      optax.polynomial_schedule(o.lr, 0.0, o.poly_power, max(total_steps - warmup, 1)),
  ], [warmup])


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
  schedule = learning_rate_schedule(config, total_steps)

  def adamw(group):
    mult = o.backbone_lr_mult if group.startswith('backbone/') else 1.0
    decay = o.weight_decay if group.endswith('/decay') else 0.0
    return optax.adamw(lambda s: schedule(s) * mult, o.b1, o.b2, weight_decay=decay)

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
