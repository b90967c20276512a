"""HVL's regularizers, transcribed from the paper's formulas.

  L_div    = sum_{l != l'} cos(q_k^l, q_k^l')^2, averaged over classes k.
  L_topo   = sum_i sum_j (t_i . t_j - tc_i . tc_j)^2
  L_anchor = sum_k [ ||Phi(t_k) - tc_k|| - sum_{j != k} log(1 + ||Phi(t_k) - Phi(t_j)||) ]
  L_mask   = 1/|M| sum_{i in M} (1 - cos(x_mask_i, x_ref_i))
  L_align  = -1/|M| sum_{i in M} log softmax_k(cos(x_mask_i, t_k) / tau)[k_i]
with t, tc the normalised learned-prompt and fixed-template ("a photo of a {}.") text embeddings.
"""
import jax
import jax.numpy as jnp

from hvl_jax.ops.sampling import l2_normalize


def diversity_loss(level_queries):
  """L_div of (L, K, D) hierarchical queries (ordered level pairs, mean over classes)."""
  q = l2_normalize(level_queries.astype(jnp.float32))
  cos = jnp.einsum('lkd,mkd->klm', q, q)                  # (K, L, L)
  off_diagonal = 1.0 - jnp.eye(q.shape[0])
  return ((cos ** 2) * off_diagonal).sum((1, 2)).mean()


def topology_loss(t_hat, t_clip):
  """L_topo of normalised (K, E) embeddings."""
  return ((t_hat @ t_hat.T - t_clip @ t_clip.T) ** 2).sum()


def anchor_loss(phi_t, t_clip):
  """L_anchor with Phi(t_hat) (K, E) and normalised t_clip (K, E)."""
  pull = jnp.linalg.norm(phi_t - t_clip, axis=-1)
  diff = phi_t[:, None, :] - phi_t[None, :, :]
  # sqrt has an infinite gradient at 0 (the diagonal); those terms are excluded anyway.
  k = phi_t.shape[0]
  off = ~jnp.eye(k, dtype=bool)
  dist = jnp.sqrt(jnp.where(off, (diff ** 2).sum(-1), 1.0))
  push = jnp.where(off, jnp.log1p(dist), 0.0).sum(1)
  return (pull - push).sum()


def mask_consistency_loss(x_mask, x_ref, region):
  """L_mask: mean (1 - cos) over the masked region. x_* (B, h, w, E), region (B, h, w) bool."""
  cos = (l2_normalize(x_mask.astype(jnp.float32)) * l2_normalize(x_ref.astype(jnp.float32))).sum(-1)
  return jnp.where(region, 1.0 - cos, 0.0).sum() / jnp.maximum(region.sum(), 1)


def align_loss(x_mask, text, classes, region, tau):
  """L_align: pixel-text contrast over the region.

  x_mask (B, h, w, E), text (K, E) normalised, classes (B, h, w) true class per pixel,
  region (B, h, w) bool.
  """
  cos = jnp.einsum('bhwe,ke->bhwk', l2_normalize(x_mask.astype(jnp.float32)), text)
  logp = jax.nn.log_softmax(cos / tau, axis=-1)
  safe = jnp.clip(classes, 0, text.shape[0] - 1)
  nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
  return jnp.where(region, nll, 0.0).sum() / jnp.maximum(region.sum(), 1)
