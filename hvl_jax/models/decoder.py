"""DQTD: the Dual-Query Transformer Decoder (Mask2Former's masked-attention decoder).

Queries Q(0) = Q_aligned (L*K class-level, from the PTRM) U Q_vis (M learnable
instance queries). Each layer: masked cross-attention to one scale (round
robin over strides 32, 16, 8), self-attention, FFN, all post-norm. Class and
mask predictions after the input and after every layer; each prediction's
mask (sigmoid < 0.5 blocked, detached) restricts the next cross-attention.

An attention mask is the prediction's mask logits bilinearly resized to the attended scale. The
resize is linear and the logits are a product with the mask features, so the attention mask is
computed from the mask features resized once per scale: a tenth of the work of full-resolution
logits. Full-resolution masks are made only where they are read: every prediction of the rows
under deep supervision (`every_layer_rows`), the last prediction of every row. Pseudo-labels, the
feature-perturbation view, the strong views and inference read the last one alone.

Hard relevance filtering (`keep`): the class-level queries of classes judged absent are no keys
of the self-attention, and their predictions are a certain no-object with an empty mask, so
they change nothing else and add nothing to a class score.
"""
import dataclasses
from typing import Any, List, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hvl_jax.models.compute_settings import ComputeConfig
from hvl_jax.ops.attention import MultiHeadAttention
from hvl_jax.ops.layer_scan import Remat, check_remat, remat_layer, scan_or_unroll
from hvl_jax.ops.position import sine_position_embedding


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Sizes of the DQTD (`model.decoder`) and its query switches.

  layers, heads, ffn_dim: 9, 8, 2048; instance_queries: M (0 disables Q_vis); query_refinement:
  refine the class-level queries in every layer; remat: 'none' or the rematerialisation policy
  of each layer (`layer_scan`).
  """
  layers: int = 9
  heads: int = 8
  ffn_dim: int = 2048
  instance_queries: int = 100
  query_refinement: bool = True
  remat: Remat = 'none'

  def __post_init__(self):
    check_remat(self.remat, 'model.decoder.remat')
    if self.instance_queries < 0:
      raise ValueError(f'model.decoder.instance_queries must be >= 0, got {self.instance_queries}')


class DecoderLayer(nn.Module):
  dim: int
  heads: int
  ffn_dim: int
  dtype: Any = jnp.float32
  attention_impl: str = 'auto'

  @nn.compact
  def __call__(self, tgt, query_pos, memory, memory_pos, attend, keep=None):
    """tgt, query_pos (B, Q, D); memory, memory_pos (B, S, D); attend (B, 1, Q, S) bool;
    keep (B, Q) bool: the queries others attend to (None = all)."""
    mha = lambda name: MultiHeadAttention(dim=self.dim, num_heads=self.heads, dtype=self.dtype,
                                          implementation=self.attention_impl, name=name)
    ln = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    tgt = ln('cross_norm')(tgt +
                           mha('cross_attn')(tgt + query_pos, memory + memory_pos, memory, attend))
    q = tgt + query_pos
    tgt = ln('self_norm')(tgt +
                          mha('self_attn')(q, q, tgt, None if keep is None else keep[:, None,
                                                                                     None, :]))
    ffn = nn.Dense(self.dim, dtype=self.dtype, name='linear2')(
        nn.relu(nn.Dense(self.ffn_dim, dtype=self.dtype, name='linear1')(tgt)))
    return ln('ffn_norm')(tgt + ffn)


class PredictionHeads(nn.Module):
  """Shared LayerNorm, class head (K+1) and 3-layer mask-embedding MLP."""
  num_classes: int
  dim: int
  mask_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries, keep=None):
    """queries (B, Q, D) -> cls (B, Q, K+1) float32, mask embeddings (B, Q, Dm) (`mask_logits`);
    queries not in `keep` (B, Q) bool predict no-object with certainty."""
    x = nn.LayerNorm(dtype=self.dtype, name='decoder_norm')(queries)
    cls = nn.Dense(self.num_classes + 1, dtype=self.dtype,
                   name='class_embed')(x).astype(jnp.float32)
    e = nn.relu(nn.Dense(self.dim, dtype=self.dtype, name='mask_embed_0')(x))
    e = nn.relu(nn.Dense(self.dim, dtype=self.dtype, name='mask_embed_1')(e))
    e = nn.Dense(self.mask_dim, dtype=self.dtype, name='mask_embed_2')(e)
    if keep is not None:
      no_object = jnp.full((self.num_classes + 1,), FILTERED_LOGIT).at[-1].set(0.0)
      cls = jnp.where(keep[..., None], cls, no_object)
    return cls, e


# Logit of what a filtered query predicts: probability 0 after softmax or sigmoid.
FILTERED_LOGIT = -1e4


def mask_logits(embeddings, mask_features, keep=None):
  """embeddings (B, Q, Dm) x mask_features (B, h, w, Dm) -> float32 logits (B, h, w, Q); queries
  not in `keep` (B, Q) bool have an empty mask."""
  masks = jnp.einsum('bqc,bhwc->bhwq', embeddings,
                     mask_features.astype(embeddings.dtype)).astype(jnp.float32)
  return masks if keep is None else jnp.where(keep[:, None, None, :], masks, FILTERED_LOGIT)


def resized(mask_features, size: Tuple[int, int], dtype):
  """Mask features (B, H4, W4, Dm) bilinearly resized to `size` (resized in float32)."""
  b, _, _, d = mask_features.shape
  return jax.image.resize(mask_features.astype(jnp.float32), (b, *size, d), 'bilinear',
                          antialias=False).astype(dtype)


def attention_mask(logits):
  """Mask2Former's attention mask from mask logits (B, h, w, Q) at the size of the attended level.

  Returns (B, 1, Q, h*w) bool, True = attend; a fully blocked query attends everywhere.
  """
  b, _, _, q = logits.shape
  attend = jax.nn.sigmoid(logits).reshape(b, -1, q).transpose(0, 2, 1) >= 0.5
  attend = attend | ~attend.any(axis=-1, keepdims=True)
  return jax.lax.stop_gradient(attend)[:, None]


def query_predictions(heads, tgt, next_features, full_features, keep=None):
  """What the queries tgt (B, Q, D) predict: the logits of the next attention mask (B, h, w, Q),
  at the size of `next_features` (B, h, w, Dm), and the prediction (cls (R, Q, K+1), masks
  (R, H4, W4, Q)) of the first R rows, those of `full_features` (R, H4, W4, Dm)."""
  cls, embed = heads(tgt, keep)
  rows = full_features.shape[0]
  return mask_logits(embed, next_features, keep), (
      cls[:rows], mask_logits(embed[:rows], full_features, None if keep is None else keep[:rows]))


def decoder_step(layer, heads, tgt, attend_logits, query_pos, memory, memory_pos, next_features,
                 full_features, initial_class, refine: bool, keep=None):
  """One masked-attention layer on one scale, then `query_predictions`: (tgt, attention logits,
  (cls, masks))."""
  tgt = layer(tgt, query_pos, memory, memory_pos, attention_mask(attend_logits), keep)
  n_class = initial_class.shape[1]
  if not refine and n_class:
    tgt = jnp.concatenate([initial_class, tgt[:, n_class:]], axis=1)
  return (tgt, *query_predictions(heads, tgt, next_features, full_features, keep))


def decoder_layer(cls, dim: int, cfg: DecoderConfig, compute: ComputeConfig, name: str):
  """A masked-attention layer (`cls`: DecoderLayer or its rematerialised version)."""
  return cls(dim=dim, heads=cfg.heads, ffn_dim=cfg.ffn_dim, dtype=compute.jnp_dtype,
             attention_impl=compute.attention_impl, name=name)


def prediction_heads(num_classes: int, dim: int, mask_dim: int, compute: ComputeConfig):
  return PredictionHeads(num_classes=num_classes, dim=dim, mask_dim=mask_dim,
                         dtype=compute.jnp_dtype, name='heads')


class DecoderRound(nn.Module):
  """One layer per scale ('layer_{l}') with the shared 'heads': the step of the scanned decoder."""
  num_classes: int
  dim: int
  mask_dim: int
  config: DecoderConfig
  compute: ComputeConfig

  @nn.compact
  def __call__(self, carry, query_pos, memories, memory_pos, next_features, full_features,
               initial_class, keep):
    tgt, attend_logits = carry
    heads = prediction_heads(self.num_classes, self.dim, self.mask_dim, self.compute)
    outputs = []
    for l in range(len(memories)):
      layer = decoder_layer(DecoderLayer, self.dim, self.config, self.compute, f'layer_{l}')
      tgt, attend_logits, out = decoder_step(layer, heads, tgt, attend_logits, query_pos,
                                             memories[l], memory_pos[l], next_features[l],
                                             full_features, initial_class,
                                             self.config.query_refinement, keep)
      outputs.append(out)
    return (tgt, attend_logits), outputs


class DQTD(nn.Module):
  """Dual-query masked-attention transformer decoder.

  Attributes:
    num_classes: K of the class head (K+1 logits: the training classes and no-object); the
      class-level queries may be of other classes (open-vocabulary inference), L per class.
    num_levels: L class-query levels (0 when there are no class-level queries).
    dim: query width D (256); mask_dim: mask-feature width (256).
    config: sizes, instance queries M, query refinement, rematerialisation (`DecoderConfig`).
    compute: dtype, attention kernel, scanned rounds (`ComputeConfig`).
  """
  num_classes: int
  num_levels: int = 3
  dim: int = 256
  mask_dim: int = 256
  config: DecoderConfig = DecoderConfig()
  compute: ComputeConfig = ComputeConfig()

  def initial_queries(self, class_queries, keep, b: int, dtype):
    """Q^(0) = Q_aligned ∪ Q_vis: (tgt (B, Q, D), query_pos (B, Q, D), keep (B, Q) bool per query
    or None, the number of class-level queries)."""
    cfg = self.config
    tgt, pos = [], []
    if class_queries is not None:
      level_pos = self.param('class_query_pos', nn.initializers.normal(1.0),
                             (self.num_levels, self.dim))
      tgt.append(class_queries.astype(dtype))
      pos.append(jnp.repeat(level_pos, class_queries.shape[1] // self.num_levels, axis=0))
    if cfg.instance_queries:
      feat = self.param('query_feat', nn.initializers.normal(1.0), (cfg.instance_queries, self.dim))
      embed = self.param('query_embed', nn.initializers.normal(1.0),
                         (cfg.instance_queries, self.dim))
      tgt.append(jnp.broadcast_to(feat, (b,) + feat.shape).astype(dtype))
      pos.append(embed)
    if not tgt:
      raise ValueError('the decoder needs class-level queries or instance queries '
                       '(model.decoder.instance_queries > 0)')
    tgt = jnp.concatenate(tgt, axis=1)
    query_pos = jnp.broadcast_to(jnp.concatenate(pos, 0)[None], tgt.shape).astype(dtype)
    n_class = 0 if class_queries is None else class_queries.shape[1]
    if keep is not None and n_class:    # per query: each level's class queries, then the instances
      keep = jnp.concatenate([jnp.tile(keep, (1, self.num_levels)),
                              jnp.ones((b, tgt.shape[1] - n_class), bool)], axis=1)
    else:
      keep = None
    return tgt, query_pos, keep, n_class

  def memories(self, multi_scale: List[jax.Array], dtype):
    """The scales as attention memories: ([(B, h_l * w_l, D)] with the level embedding,
    [(1, h_l * w_l, D)] sine positions, [(h_l, w_l)])."""
    b = multi_scale[0].shape[0]
    level_embed = self.param('level_embed', nn.initializers.normal(1.0),
                             (len(multi_scale), self.dim))
    memories, memory_pos, sizes = [], [], []
    for l, x in enumerate(multi_scale):
      h, w = x.shape[1:3]
      sizes.append((h, w))
      memories.append((x.reshape(b, h * w, self.dim) + level_embed[l]).astype(dtype))
      memory_pos.append(
          jnp.asarray(sine_position_embedding(h, w, self.dim)).reshape(1, h * w,
                                                                       self.dim).astype(dtype))
    return memories, memory_pos, sizes

  @nn.compact
  def __call__(self, class_queries: Optional[jax.Array], multi_scale: List[jax.Array],
               mask_features, keep: Optional[jax.Array] = None,
               every_layer_rows: Optional[int] = None):
    """Decodes.

    Args:
      class_queries: (B, L*K', D) Q_aligned, level-major, or None (K' = K but for
        open-vocabulary inference).
      multi_scale: 3 maps (B, h_l, w_l, D), strides 32, 16, 8.
      mask_features: (B, H/4, W/4, mask_dim).
      keep: (B, K') bool, classes not filtered out by the relevance (None = all).
      every_layer_rows: R, the leading rows whose every prediction is read (deep supervision;
        None = all B); the other rows' earlier predictions are not made (module docstring).
    Returns:
      list of layers+1 (cls_logits (R, Q, K+1), mask_logits (R, H/4, W/4, Q)), the last of all B
      rows; Q = L*K' + M.
    """
    cfg, compute, dtype = self.config, self.compute, self.compute.jnp_dtype
    n_scales = len(multi_scale)
    b = mask_features.shape[0]
    rows = b if every_layer_rows is None else every_layer_rows
    tgt, query_pos, keep, n_class = self.initial_queries(class_queries, keep, b, dtype)
    initial_class = tgt[:, :n_class]
    memories, memory_pos, sizes = self.memories(multi_scale, dtype)
    at_scale = [resized(mask_features, size, dtype) for size in sizes]
    next_features = at_scale[1:] + at_scale[:1]  # a layer on scale l feeds the next, on scale l + 1
    full_features = mask_features[:rows]

    heads = prediction_heads(self.num_classes, self.dim, self.mask_dim, compute)
    attend_logits, first = query_predictions(heads, tgt, at_scale[0], full_features, keep)
    predictions = [first]
    # A round is one layer per scale; a last partial round (layers not a multiple of the scales)
    # keeps the decoder unrolled.
    rounds, rest = -(-cfg.layers // n_scales), cfg.layers % n_scales
    layer_cls = remat_layer(DecoderLayer, cfg.remat)

    def unrolled(r, carry):
      tgt, attend_logits = carry
      outputs = []
      for i in range(r * n_scales, min((r + 1) * n_scales, cfg.layers)):
        l = i % n_scales
        layer = decoder_layer(layer_cls, self.dim, cfg, compute, f'layer_{i}')
        tgt, attend_logits, out = decoder_step(layer, heads, tgt, attend_logits, query_pos,
                                               memories[l], memory_pos[l], next_features[l],
                                               full_features, initial_class, cfg.query_refinement,
                                               keep)
        outputs.append(out)
      return (tgt, attend_logits), outputs

    def step_params(p, r):
      return {
          'heads': p['heads'],
          **{f'layer_{l}': p[f'layer_{r * n_scales + l}'] for l in range(n_scales)}
      }

    step = DecoderRound(num_classes=self.num_classes, dim=self.dim, mask_dim=self.mask_dim,
                        config=cfg, compute=compute, parent=None)
    (tgt, _), outputs = scan_or_unroll(self, compute.scan and not rest, rounds, unrolled, step,
                                       step_params, (tgt, attend_logits), cfg.remat, query_pos,
                                       memories, memory_pos, next_features, full_features,
                                       initial_class, keep)
    for round_outputs in outputs:
      predictions.extend(round_outputs)
    if rows < b:    # the last prediction of the other rows too
      cls, embed = heads(tgt, keep)
      masks = mask_logits(embed[rows:], mask_features[rows:], None if keep is None else keep[rows:])
      predictions[-1] = (cls, jnp.concatenate([predictions[-1][1], masks]))
    return predictions
