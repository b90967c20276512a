"""The tiny configuration shared by the tests (random tiny CLIP, 64x64 input, 5 classes), its
model and parameters, and random objective batches."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import base, demo
from hvl_jax.models import hvl
from hvl_jax.training import objective

CLASS_NAMES = ('background', 'disk', 'square', 'triangle', 'stripes')


def tiny_config(**overrides):
  """The demo's shape with a random CLIP of tiny sizes, no gating, its own recipe."""
  c = demo.get_config()
  c.model.clip.update(
      dict(pretrained='', vision_width=32, vision_layers=3, vision_heads=2, vision_mlp_dim=64,
           text_width=32, text_layers=1, text_heads=2, text_mlp_dim=64, projection_dim=32,
           vocab_size=1000, context_length=24))
  c.model.relevance.update(dict(mode='all',
                                threshold=0.5))  # a random CLIP's zero-shot relevance is noise
  c.optim.update(dict(backbone_lr_mult=1.0, clip_norm=1.0))
  c.data.update(dict(synthetic_labeled=32, synthetic_unlabeled=128, synthetic_val=32))
  del c.evals['zero_shot']
  c.model.out_layers = (1, 2, 3)
  c.model.hidden_dim = 32
  c.model.htqg.mlp_hidden = 32
  c.model.decoder.instance_queries = 4
  c.model.pixel_decoder.update(dict(layers=1, heads=2, points=2, ffn_dim=64, ptrm_heads=2))
  c.model.decoder.update(dict(layers=2, heads=2, ffn_dim=64))
  c.loss.supervised.num_points = 128
  c.loss.supervised.max_masks = 12
  return base.with_overrides(c, overrides)


def build(config, names=CLASS_NAMES):
  model, clip = hvl.build_model(config, names)
  return model, hvl.init_params(model, clip, jax.random.PRNGKey(0), config.data.crop_size)


def make_batch(rng, bl=2, bu=2, size=64):
  labels = np.zeros((bl, size, size), np.int32)
  labels[:, 8:40, 10:50] = rng.randint(1, 5, (bl, 1, 1))
  labels[0, -4:] = 255
  box = np.zeros((bu, size, size), bool)
  box[:, 5:30, 20:60] = True
  img = lambda b: jnp.asarray(rng.randn(b, size, size, 3), jnp.float32)
  return objective.Batch(img(bl), jnp.asarray(labels), img(bu), img(bu), img(bu), jnp.asarray(box),
                         jnp.asarray(~box), jnp.ones((bu, size, size), bool))


def finite_loss_and_grads(config, batch, names=CLASS_NAMES):
  """(terms, grads) of the jitted objective, all finite."""
  model, params = build(config, names)
  loss = objective.objective_config(config, model.cfg)
  fn = jax.jit(
      jax.value_and_grad(
          lambda p: objective.compute_loss(model, p, batch, jax.random.PRNGKey(1), loss),
          has_aux=True))
  (loss, terms), grads = fn(params)
  assert_finite(loss, terms, grads)
  return terms, grads


def assert_finite(loss, terms, grads):
  """The loss, every term and every gradient finite."""
  assert np.isfinite(float(loss))
  assert all(np.isfinite(np.asarray(v)).all() for v in terms.values())
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
