"""Semi-supervised terms and the paper's regularizers against numpy transcriptions."""

import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.losses import regularizers, semi


def test_semi_losses_against_numpy(rng):
  p = rng.rand(2, 3, 3, 4) + 0.1
  p /= p.sum(-1, keepdims=True)
  pseudo = rng.randint(0, 4, (2, 3, 3))
  conf = rng.rand(2, 3, 3)
  valid = rng.rand(2, 3, 3) > 0.2
  ce = -np.log(np.take_along_axis(p, pseudo[..., None], -1)[..., 0])
  ref = (ce * ((conf >= 0.5) & valid)).sum() / valid.sum()
  np.testing.assert_allclose(semi.pseudo_label_loss(p, pseudo, conf, valid, 0.5), ref, rtol=1e-5)
  ent = -(p * np.log(p)).sum(-1)
  np.testing.assert_allclose(semi.entropy_loss(p, valid), (ent * valid).sum() / valid.sum(),
                             rtol=1e-5)


def test_pseudo_label_accuracy_against_a_pixel_count(rng):
  pseudo = rng.randint(0, 3, (2, 5, 5))
  labels = np.where(rng.rand(2, 5, 5) < 0.6, pseudo, rng.randint(0, 3, (2, 5, 5)))
  labels[0, 0] = 255                     # ignore pixels are not counted
  conf = rng.rand(2, 5, 5)
  valid = rng.rand(2, 5, 5) > 0.2
  got = semi.pseudo_label_accuracy(pseudo, conf, labels, valid, 0.5)
  right = wrong = right_all = wrong_all = 0
  for i in np.ndindex(pseudo.shape):
    if valid[i] and labels[i] != 255:
      ok = pseudo[i] == labels[i]
      right_all, wrong_all = right_all + ok, wrong_all + (not ok)
      if conf[i] >= 0.5:
        right, wrong = right + ok, wrong + (not ok)
  np.testing.assert_allclose(got['pseudo_accuracy'], right / (right + wrong), rtol=1e-6)
  np.testing.assert_allclose(got['pseudo_accuracy_all'], right_all / (right_all + wrong_all),
                             rtol=1e-6)


def test_regularizers_against_paper_formulas(rng):
  q = rng.randn(3, 4, 8)
  ref_div = 0.0
  for k in range(4):
    for l in range(3):
      for m in range(3):
        if l != m:
          ref_div += (q[l, k] @ q[m, k] / np.linalg.norm(q[l, k]) / np.linalg.norm(q[m, k])) ** 2
  np.testing.assert_allclose(regularizers.diversity_loss(jnp.asarray(q), 'sum'), ref_div / 4,
                             rtol=1e-5)
  np.testing.assert_allclose(regularizers.diversity_loss(jnp.asarray(q)), ref_div / 4 / 6,
                             rtol=1e-5)

  norm = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  t, tc, phi = norm(rng.randn(4, 6)), norm(rng.randn(4, 6)), rng.randn(4, 6)
  topo = sum((t[i] @ t[j] - tc[i] @ tc[j]) ** 2 for i in range(4) for j in range(4))
  np.testing.assert_allclose(regularizers.topology_loss(t, tc, 'sum'), topo, rtol=1e-5)
  np.testing.assert_allclose(regularizers.topology_loss(t, tc), topo / 16, rtol=1e-5)
  pull = [np.linalg.norm(phi[k] - tc[k]) for k in range(4)]
  push = [
      sum(np.log(1 + np.linalg.norm(phi[k] - phi[j])) for j in range(4) if j != k) for k in range(4)
  ]
  anchor = sum(p - q for p, q in zip(pull, push))
  np.testing.assert_allclose(regularizers.anchor_loss(jnp.asarray(phi), jnp.asarray(tc), 'sum'),
                             anchor, rtol=1e-5)
  np.testing.assert_allclose(regularizers.anchor_loss(jnp.asarray(phi), jnp.asarray(tc)),
                             np.mean([p - q / 3 for p, q in zip(pull, push)]), rtol=1e-5)
  assert np.isfinite(
      np.asarray(
          jax.grad(lambda p: regularizers.anchor_loss(p, jnp.asarray(tc)))(
              jnp.asarray(phi)))).all()

  xm, xr = rng.randn(2, 3, 3, 6), rng.randn(2, 3, 3, 6)
  region = rng.rand(2, 3, 3) > 0.5
  cos = (norm(xm) * norm(xr)).sum(-1)
  np.testing.assert_allclose(regularizers.mask_consistency_loss(xm, xr, region),
                             (1 - cos)[region].mean(), rtol=1e-5)
  text = norm(rng.randn(4, 6))
  classes = rng.randint(0, 4, (2, 3, 3))
  logits = np.einsum('bhwe,ke->bhwk', norm(xm), text) / 0.07
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, classes[..., None], -1)[..., 0]
  np.testing.assert_allclose(regularizers.align_loss(xm, text, classes, region, 0.07),
                             nll[region].mean(), rtol=1e-5)


def test_regularizers_are_safe_where_class_embeddings_coincide(rng):
  # A class listed twice: equal rows in every embedding. Loss and gradient stay finite.
  norm = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  t = norm(rng.randn(5, 6))
  t = jnp.asarray(np.concatenate([t, t[:2]]), jnp.float32)
  q = jnp.asarray(np.concatenate([rng.randn(3, 5, 8)] * 2, axis=1)[:, :7], jnp.float32)
  for reduction in regularizers.REDUCTIONS:
    for fn, args in ((regularizers.anchor_loss, (t, t)), (regularizers.topology_loss, (t, t)),
                     (regularizers.diversity_loss, (q,))):
      value, grad = jax.value_and_grad(lambda a: fn(a, *args[1:], reduction))(args[0])
      assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all(), (fn.__name__,
                                                                                 reduction)
