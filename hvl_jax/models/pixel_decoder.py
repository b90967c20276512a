"""Mask2Former's MSDeformAttn pixel decoder with the PTRM interleaved (HVL).

Strides 32, 16, 8 go through 1x1 conv + GroupNorm input projections and six
deformable-attention encoder layers; after every encoder layer a PTRM block per
level lets the textual queries of that level and its pixel features refine each
other. An FPN step adds stride 4 and a 1x1 conv gives the mask features.
Level order everywhere: index 0 = stride 32, 1 = stride 16, 2 = stride 8.
"""
import dataclasses
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.models.compute_settings import ComputeConfig
from hvl_jax.models.pyramid import group_norm
from hvl_jax.ops.attention import MultiHeadAttention
from hvl_jax.ops.deform_attn import MSDeformAttn, reference_points
from hvl_jax.ops.layer_scan import Remat, check_remat, remat_layer, scan_or_unroll
from hvl_jax.ops.position import sine_position_embedding

LEVEL_STRIDES = (32, 16, 8)


@dataclasses.dataclass(frozen=True)
class PixelDecoderConfig:
  """Sizes of the pixel decoder and its PTRM (`model.pixel_decoder`).

  layers, heads, points, ffn_dim: deformable encoder (6, 8, 4, 1024); query_chunk: queries per
  deformable-attention chunk (0 = all at once); ptrm: interleave PTRM blocks; ptrm_heads: their
  heads; remat: 'none' or the rematerialisation policy of each encoder layer (`layer_scan`).
  """
  layers: int = 6
  heads: int = 8
  points: int = 4
  ffn_dim: int = 1024
  query_chunk: int = 0
  ptrm: bool = True
  ptrm_heads: int = 8
  remat: Remat = 'none'

  def __post_init__(self):
    check_remat(self.remat, 'model.pixel_decoder.remat')


class PTRM(nn.Module):
  """Pixel-Text Refinement Module for one level (pre-LayerNorm residual cross-attention).

  text->pixel: z += softmax(Q_z K_c^T / sqrt(d)) V_c with cluster centres c = Linear(q);
  pixel->text: q += softmax(Q_q K_z^T / sqrt(d)) V_z.
  """
  dim: int
  num_heads: int = 8
  dtype: Any = jnp.float32
  attention_impl: str = 'auto'

  @nn.compact
  def __call__(self, z, q, keep=None):
    """z (B, S_l, D) pixel features, q (B, K, D) textual queries -> refined (z, q).

    keep: (B, K) bool, the classes whose queries the pixels attend to (None = all): queries of
    filtered classes are no keys or values of text->pixel.
    """
    ln = lambda name: nn.LayerNorm(dtype=self.dtype, name=name)
    mha = lambda name: MultiHeadAttention(dim=self.dim, num_heads=self.num_heads, dtype=self.dtype,
                                          implementation=self.attention_impl, name=name)
    centres = ln('centre_norm')(nn.Dense(self.dim, dtype=self.dtype, name='cluster_centres')(q))
    mask = None if keep is None else keep[:, None, None, :]
    z = z + mha('text_to_pixel')(ln('pixel_norm')(z), centres, centres, mask)
    pixels = ln('pixel_kv_norm')(z)
    q = q + mha('pixel_to_text')(ln('text_norm')(q), pixels, pixels)
    return z, q


class DeformEncoderLayer(nn.Module):
  """Post-norm deformable self-attention + ReLU FFN (Deformable DETR encoder layer)."""
  dim: int
  num_heads: int
  num_levels: int
  num_points: int
  ffn_dim: int
  query_chunk: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, src, pos, ref, spatial_shapes):
    """src, pos (B, S, D); ref (1, S, 2) -> (B, S, D)."""
    attn = MSDeformAttn(dim=self.dim, num_heads=self.num_heads, num_levels=self.num_levels,
                        num_points=self.num_points, query_chunk=self.query_chunk, dtype=self.dtype,
                        name='self_attn')
    src = nn.LayerNorm(dtype=self.dtype,
                       name='norm1')(src + attn(src + pos, ref, src, spatial_shapes))
    ffn = nn.Dense(self.dim, dtype=self.dtype, name='linear2')(
        nn.relu(nn.Dense(self.ffn_dim, dtype=self.dtype, name='linear1')(src)))
    return nn.LayerNorm(dtype=self.dtype, name='norm2')(src + ffn)


def encoder_stage(encoder, ptrms, src, queries, pos, ref, shapes, splits, keep=None):
  """One encoder layer over all levels, then each level's PTRM block (if any).

  src (B, S, D) all levels' tokens; queries: tuple of L (B, K, D) or None; keep (B, K) bool or None.
  """
  src = encoder(src, pos, ref, shapes)
  if ptrms:
    zs, queries = jnp.split(src, splits, axis=1), list(queries)
    for l, ptrm in enumerate(ptrms):
      zs[l], queries[l] = ptrm(zs[l], queries[l], keep)
    src, queries = jnp.concatenate(zs, axis=1), tuple(queries)
  return src, queries


def encoder_layer(cls, dim: int, num_levels: int, cfg: PixelDecoderConfig, compute: ComputeConfig,
                  name: str):
  """A deformable encoder layer (`cls`: DeformEncoderLayer or its rematerialised version)."""
  return cls(dim=dim, num_heads=cfg.heads, num_levels=num_levels, num_points=cfg.points,
             ffn_dim=cfg.ffn_dim, query_chunk=cfg.query_chunk, dtype=compute.jnp_dtype, name=name)


def ptrm_blocks(dim: int, num_levels: int, cfg: PixelDecoderConfig, compute: ComputeConfig,
                prefix: str):
  """One PTRM per level, named `<prefix><level>`."""
  return [
      PTRM(dim=dim, num_heads=cfg.ptrm_heads, dtype=compute.jnp_dtype,
           attention_impl=compute.attention_impl, name=f'{prefix}{l}') for l in range(num_levels)
  ]


class EncoderStage(nn.Module):
  """`encoder_stage` as a module ('encoder', 'ptrm_{l}'): the step of the scanned encoder."""
  dim: int
  config: PixelDecoderConfig
  compute: ComputeConfig
  use_ptrm: bool
  shapes: Tuple[Tuple[int, int], ...]

  @nn.compact
  def __call__(self, carry, pos, ref, keep):
    n = len(self.shapes)
    encoder = encoder_layer(DeformEncoderLayer, self.dim, n, self.config, self.compute, 'encoder')
    ptrms = ptrm_blocks(self.dim, n, self.config, self.compute, 'ptrm_') if self.use_ptrm else []
    splits = np.cumsum([h * w for h, w in self.shapes])[:-1]
    return encoder_stage(encoder, ptrms, *carry, pos, ref, self.shapes, splits, keep), None


class PixelDecoder(nn.Module):
  """MSDeformAttn pixel decoder + PTRM.

  Attributes:
    dim: hidden width (256).
    mask_dim: width of the mask features (256).
    config: sizes, PTRM switch and rematerialisation (`PixelDecoderConfig`).
    compute: dtype, attention kernel, scanned layers (`ComputeConfig`).
  """
  dim: int = 256
  mask_dim: int = 256
  config: PixelDecoderConfig = PixelDecoderConfig()
  compute: ComputeConfig = ComputeConfig()

  @nn.compact
  def __call__(self, features: Dict[int, jax.Array], text_queries: Optional[jax.Array] = None,
               keep: Optional[jax.Array] = None):
    """Runs the decoder.

    Args:
      features: {stride: (B, H/stride, W/stride, C)} for strides 4, 8, 16, 32.
      text_queries: (B, L=3, K, D) hierarchical textual queries (level 0 = stride 32),
        or None when there are none (random-query ablation).
      keep: (B, K) bool, classes not filtered out by the relevance (None = all).
    Returns:
      dict with
        multi_scale: list of 3 maps (B, h_l, w_l, D), strides 32, 16, 8 (refined).
        mask_features: (B, H/4, W/4, mask_dim).
        queries: (B, L, K, D) refined queries (Q_aligned), or None.
    """
    cfg, compute, dtype = self.config, self.compute, self.compute.jnp_dtype
    b = features[4].shape[0]
    n_levels = len(LEVEL_STRIDES)
    maps = [group_norm(self.dim, dtype, f'input_norm_{l}')(
        nn.Conv(self.dim, (1, 1), dtype=dtype, name=f'input_proj_{l}')(features[stride]))
            for l, stride in enumerate(LEVEL_STRIDES)]
    shapes = tuple(m.shape[1:3] for m in maps)
    level_embed = self.param('level_embed', nn.initializers.normal(1.0), (n_levels, self.dim))
    pos = jnp.concatenate([
        jnp.asarray(sine_position_embedding(h, w, self.dim)).reshape(h * w, self.dim) +
        level_embed[l] for l, (h, w) in enumerate(shapes)
    ], axis=0)[None].astype(dtype)
    ref = jnp.asarray(reference_points(shapes))[None]
    src = jnp.concatenate([m.reshape(b, -1, self.dim) for m in maps], axis=1)
    splits = np.cumsum([h * w for h, w in shapes])[:-1]

    use_ptrm = cfg.ptrm and text_queries is not None
    queries = tuple(
        text_queries[:, l] for l in range(n_levels)) if text_queries is not None else None
    # spatial_shapes (argument 4, counting self) is static.
    layer_cls = remat_layer(DeformEncoderLayer, cfg.remat, static_argnums=(4,))

    def unrolled(i, carry):
      encoder = encoder_layer(layer_cls, self.dim, n_levels, cfg, compute, f'encoder_{i}')
      ptrms = ptrm_blocks(self.dim, n_levels, cfg, compute, f'ptrm_{i}_') if use_ptrm else []
      return encoder_stage(encoder, ptrms, *carry, pos, ref, shapes, splits, keep), None

    def step_params(p, i):
      return {
          'encoder': p[f'encoder_{i}'],
          **({f'ptrm_{l}': p[f'ptrm_{i}_{l}'] for l in range(n_levels)} if use_ptrm else {})
      }

    stage = EncoderStage(dim=self.dim, config=cfg, compute=compute, use_ptrm=use_ptrm,
                         shapes=shapes, parent=None)
    (src, queries), _ = scan_or_unroll(self, compute.scan, cfg.layers, unrolled, stage, step_params,
                                       (src, queries), cfg.remat, pos, ref, keep)

    multi_scale = [
        z.reshape(b, h, w, self.dim) for z, (h, w) in zip(jnp.split(src, splits, axis=1), shapes)
    ]
    out_queries = jnp.stack(queries, axis=1) if queries is not None else None
    return dict(multi_scale=multi_scale,
                mask_features=self.fpn_mask_features(features[4], multi_scale[-1],
                                                     dtype), queries=out_queries)

  def fpn_mask_features(self, stride_4, stride_8, dtype):
    """The FPN step to stride 4: the backbone's stride-4 level (B, H/4, W/4, C) and the finest
    encoder level (B, H/8, W/8, D) -> mask features (B, H/4, W/4, mask_dim)."""
    lateral = group_norm(self.dim, dtype, 'lateral_norm')(
        nn.Conv(self.dim, (1, 1), use_bias=False, dtype=dtype, name='lateral_conv')(stride_4))
    up = jax.image.resize(stride_8, lateral.shape[:3] + (self.dim,),
                          'bilinear').astype(lateral.dtype)
    y = nn.Conv(self.dim, (3, 3), use_bias=False, dtype=dtype, name='output_conv')(lateral + up)
    y = nn.relu(group_norm(self.dim, dtype, 'output_norm')(y))
    return nn.Conv(self.mask_dim, (1, 1), dtype=dtype, name='mask_features')(y)
