"""Optimizer: AdamW with parameter groups, warm-up + poly schedule, clipping, NaN skipping."""
import flax
import jax
import optax

# Leaves never weight-decayed besides biases and norms (all 1-D): embeddings and learned queries.
NO_DECAY_NAMES = ('embedding', 'class_embedding', 'prompt', 'query_feat', 'query_embed', 'level_embed',
                  'class_query_pos')


def learning_rate_schedule(config, total_steps: int) -> optax.Schedule:
  """Linear warm-up to optim.lr over warmup_steps, then poly(power) decay to 0 at total_steps."""
  o = config.optim
  warmup = min(o.warmup_steps, max(total_steps - 1, 0))
  return optax.join_schedules([
      optax.linear_schedule(0.0, o.lr, max(warmup, 1)),
      optax.polynomial_schedule(o.lr, 0.0, o.poly_power, max(total_steps - warmup, 1)),
  ], [warmup])


def decay_mask(params):
  def keep(path, leaf):
    name = str(path[-1].key) if hasattr(path[-1], 'key') else str(path[-1])
    return leaf.ndim >= 2 and name not in NO_DECAY_NAMES
  return jax.tree_util.tree_map_with_path(keep, params)


def param_groups(params):
  """'backbone' (lr x backbone_lr_mult) or 'head' per leaf, by top-level module."""
  return {k: jax.tree.map(lambda _: 'backbone' if k == 'backbone' else 'head', v) for k, v in params.items()}


def make_optimizer(config, params, total_steps: int) -> optax.GradientTransformation:
  """The full transformation for the trainable `params` tree."""
  o = config.optim
  schedule = learning_rate_schedule(config, total_steps)
  adamw = lambda mult: optax.adamw(lambda s: schedule(s) * mult, o.b1, o.b2, weight_decay=o.weight_decay,
                                   mask=decay_mask)
  tx = optax.chain(
      optax.clip_by_global_norm(o.clip_norm),
      optax.multi_transform({'backbone': adamw(o.backbone_lr_mult), 'head': adamw(1.0)}, param_groups(params)))
  # A non-finite gradient skips the update (counted in the state); the loop stops after
  # train.max_nonfinite in a row.
  tx = optax.apply_if_finite(tx, max_consecutive_errors=2 ** 30)
  if config.train.grad_accum > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=config.train.grad_accum)
  return tx


def nonfinite_counts(opt_state):
  """(consecutive, total) skipped updates from the apply_if_finite state inside `opt_state`."""
  state = opt_state.inner_opt_state if isinstance(opt_state, optax.MultiStepsState) else opt_state
  return state.notfinite_count, state.total_notfinite
