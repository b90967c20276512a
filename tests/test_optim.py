"""The optimizer on parameter-group vectors equals optax's per-leaf AdamW with masks; its
schedule is optax's, with the run's length in the state (one program for every length)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hvl_jax.training import optim
from tiny import tiny_config


def test_group_vectors_match_per_leaf_adamw(rng):
  config = tiny_config(
      **{
          'optim.weight_decay': 0.1, 'optim.backbone_lr_mult': 0.1, 'optim.clip_norm': 1.0,
          'optim.warmup_steps': 2, 'optim.lr': 1e-2
      })
  shapes = {
      'backbone': {'w': (4, 3), 'b': (3,), 'embedding': (6, 4)},
      'decoder': {'query_feat': (5, 4), 'k': (4, 4), 'bias': (4,)}, 'htqg': {'prompt': (8, 4)}
  }
  params = jax.tree.map(lambda s: jnp.asarray(rng.randn(*s), jnp.float32), shapes,
                        is_leaf=lambda x: isinstance(x, tuple))
  tx = optim.make_optimizer(config, params, 20)

  # Reference: per-leaf optax with the groups written out by hand.
  schedule = optax_schedule(1e-2, 2, 20)
  decay = {'backbone': {'w': True, 'b': False, 'embedding': False},
           'decoder': {'query_feat': False, 'k': True, 'bias': False}, 'htqg': {'prompt': False}}
  adamw = lambda mult: optax.adamw(lambda s: schedule(s) * mult, 0.9, 0.999, weight_decay=0.1,
                                   mask=decay)
  labels = {
      k: jax.tree.map(lambda _: 'bb' if k == 'backbone' else 'head', v) for k, v in params.items()
  }
  ref = optax.chain(optax.clip_by_global_norm(1.0),
                    optax.multi_transform({'bb': adamw(0.1), 'head': adamw(1.0)}, labels))

  p, s, rp, rs = params, tx.init(params), params, ref.init(params)
  for _ in range(4):
    grads = jax.tree.map(lambda x: jnp.asarray(rng.randn(*x.shape), jnp.float32), params)
    u, s = jax.jit(tx.update)(grads, s, p)
    p = optax.apply_updates(p, u)
    ru, rs = ref.update(grads, rs, rp)
    rp = optax.apply_updates(rp, ru)
  for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(rp)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert not np.allclose(np.asarray(p['backbone']['w']), np.asarray(params['backbone']['w']))
  # State: one vector per group, not one entry per leaf.
  assert {x.ndim for x in jax.tree.leaves(s) if x.size > 1} == {1}


def optax_schedule(lr, warmup, total, power=0.9):
  return optax.join_schedules([
      optax.linear_schedule(0.0, lr, max(warmup, 1)),
      optax.polynomial_schedule(lr, 0.0, power, max(total - warmup, 1))
  ], [warmup])


@pytest.mark.parametrize('warmup_steps,total', [(1500, 1), (1500, 2), (1500, 40), (3, 40), (0, 7),
                                                (30, 31)])
def test_the_schedule_is_optax_warmup_then_poly(warmup_steps, total):
  """optax's jitted schedule at every update of the run (warm-up cut to total - 1), to float32
  rounding of the peak: XLA's backend may fuse a multiply-add of constants otherwise."""
  o = optim.OptimConfig(lr=3e-4, warmup_steps=warmup_steps, poly_power=0.9)
  counts = jnp.arange(total)
  got = jax.jit(jax.vmap(optim.warmup_poly, (0, None, None)), static_argnums=2)(
      counts, jnp.int32(total), o)
  want = jax.jit(jax.vmap(optax_schedule(3e-4, min(warmup_steps, total - 1), total)))(counts)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=3e-7,
                             atol=2 * np.spacing(np.float32(3e-4)))
  assert float(optim.warmup_poly(total, total, o)) == 0.0


def test_runs_of_any_length_share_one_update_program(rng):
  """The length is in the optimizer state: the update of a 20- and a 30-step run lower to the same
  program, and a state set to 30 steps decays as a fresh 30-step one."""
  config = tiny_config(**{'optim.warmup_steps': 2, 'optim.lr': 1e-2, 'train.grad_accum': 2})
  params = {'backbone': {'w': jnp.ones((4, 3))}, 'decoder': {'k': jnp.ones((4, 4))}}
  grads = jax.tree.map(lambda x: jnp.asarray(rng.randn(*x.shape), jnp.float32), params)
  tx20, tx30 = (optim.make_optimizer(config, params, n) for n in (20, 30))
  lowered = [
      jax.jit(tx.update).lower(grads, tx.init(params), params).as_text() for tx in (tx20, tx30)
  ]
  assert lowered[0] == lowered[1]

  def run(tx, state):
    """10 micro-steps, the state donated as by the train step."""
    p, update = params, jax.jit(tx.update, donate_argnums=1)
    for _ in range(2 * 5):
      u, state = update(grads, state, p)
      p = optax.apply_updates(p, u)
    return p
  set_to_30 = run(tx20, optim.with_total_steps(tx20.init(params), 30))
  jax.tree.map(np.testing.assert_array_equal, set_to_30, run(tx30, tx30.init(params)))
  assert not np.array_equal(run(tx20, tx20.init(params))['decoder']['k'], set_to_30['decoder']['k'])
