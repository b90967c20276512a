"""HVL's regularizers, from the paper's formulas (section 3; docs/method.md).

Literal ('sum', as written in the paper):
  L_div    = sum_{l != l'} cos(q_k^l, q_k^l')^2, averaged over classes k.
  L_topo   = sum_i sum_j (t_i . t_j - tc_i . tc_j)^2
  L_anchor = sum_k [ ||Phi(t_k) - tc_k|| - sum_{j != k} log(1 + ||Phi(t_k) - Phi(t_j)||) ]
Default ('mean', `loss.prompt.reduction`): every sum over classes or pairs is a mean, so no
term grows with the class count K (the literal L_anchor is minimised at |Phi| of about K - 2,
where its value and gradient dwarf the segmentation loss at K = 150; docs/method.md).
  L_mask   = 1/|M| sum_{i in M} (1 - cos(x_mask_i, x_ref_i))
  L_align  = -1/|M| sum_{i in M} log softmax_k(cos(x_mask_i, t_k) / tau)[k_i]
with t, tc the normalised learned-prompt and fixed-template ("a photo of a {}.") text embeddings.
Distances are safe where two embeddings coincide (a class listed twice, or two names one
tokenizer maps alike): sqrt(d^2 + eps) has a finite gradient at d = 0.
"""
import jax
import jax.numpy as jnp

from hvl_jax.ops.sampling import l2_normalize

REDUCTIONS = ('mean', 'sum')
# Added under the square root of a squared distance: a finite gradient where it is 0.
DISTANCE_EPS = 1e-12


def check_reduction(reduction: str):
  if reduction not in REDUCTIONS:
    raise ValueError(f'loss.prompt.reduction must be one of {REDUCTIONS}, got {reduction!r}')


def safe_norm(x, axis: int = -1):
  """Euclidean norm with a finite gradient at 0."""
  return jnp.sqrt((x ** 2).sum(axis) + DISTANCE_EPS)


def diversity_loss(level_queries, reduction: str = 'mean'):
  """L_div of (L, K, D) hierarchical queries: over ordered level pairs (summed, or averaged with
  'mean'), averaged over classes."""
  check_reduction(reduction)
  q = l2_normalize(level_queries.astype(jnp.float32))
  levels = q.shape[0]
  cos = jnp.einsum('lkd,mkd->klm', q, q)                  # (K, L, L)
  off_diagonal = 1.0 - jnp.eye(levels)
  per_class = ((cos ** 2) * off_diagonal).sum((1, 2))
  if reduction == 'mean':
    per_class = per_class / max(levels * (levels - 1), 1)
  return per_class.mean()


def topology_loss(t_hat, t_clip, reduction: str = 'mean'):
  """L_topo of normalised (K, E) embeddings, summed or averaged over the K^2 pairs."""
  check_reduction(reduction)
  sq = (t_hat @ t_hat.T - t_clip @ t_clip.T) ** 2
  return sq.mean() if reduction == 'mean' else sq.sum()


def anchor_loss(phi_t, t_clip, reduction: str = 'mean'):
  """L_anchor with Phi(t_hat) (K, E) and normalised t_clip (K, E); 'mean' averages the push over
  the other classes and the result over classes."""
  check_reduction(reduction)
  k = phi_t.shape[0]
  pull = safe_norm(phi_t - t_clip)
  off = ~jnp.eye(k, dtype=bool)
  dist = safe_norm(phi_t[:, None, :] - phi_t[None, :, :])
  push = jnp.where(off, jnp.log1p(dist), 0.0).sum(1)
  if reduction == 'mean':
    return (pull - push / max(k - 1, 1)).mean()
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
