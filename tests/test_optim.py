"""The optimizer on parameter-group vectors equals optax's per-leaf AdamW with masks."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

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
  schedule = optim.learning_rate_schedule(config, 20)
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
