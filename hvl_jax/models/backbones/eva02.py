"""EVA02-CLIP vision tower in Flax, with timm's parameter names (`eva02_large_patch14_clip_224`).

EVA02 differs from CLIP's ViT in four places, all reproduced here:
  * 2D rotary position embeddings on the patch tokens' queries and keys (interleaved pairs,
    axial: the first half of the frequencies encodes y, the second x), on top of a learned
    absolute position embedding;
  * SwiGLU MLPs with a LayerNorm before the output projection ("sub-LN");
  * a LayerNorm on the attention output before its projection, and no key bias;
  * no pre-LayerNorm; the final LayerNorm covers every token and the projection `head` has a bias.
Any input size divisible by the patch size works: the absolute embedding is resized bicubically
and the rotary grid is rescaled onto the pre-training grid (EVA's fine-tuning scheme).
The text tower of EVA02-CLIP is OpenAI CLIP's (with exact GELU): `clip.CLIPTextEncoder`.
Weight import: `hvl_jax.models.backbones.eva02_weights`.
"""
import functools
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.models.backbones.clip import blocks_needed
from hvl_jax.ops.attention import dot_product_attention
from hvl_jax.ops.layer_scan import Remat, remat_layer, run_layers
from hvl_jax.ops.position import vit_tokens

ROPE_TEMPERATURE = 10000.0


@functools.lru_cache(maxsize=None)
def rope_tables(grid: Tuple[int, int], ref_grid: Tuple[int, int],
                head_dim: int) -> Tuple[np.ndarray, np.ndarray]:
  """sin and cos (h*w, head_dim) of EVA02's axial rotary embedding on an (h, w) token grid.

  Positions are rescaled so that the grid spans the pre-training grid `ref_grid`; frequency i
  of n = head_dim / 4 bands is temperature^(-i/n); channel pairs (2j, 2j+1) share one angle.
  """
  n = head_dim // 4
  bands = 1.0 / ROPE_TEMPERATURE ** (np.arange(n, dtype=np.float32) / n)
  ys, xs = (np.arange(s, dtype=np.float32) / s * r for s, r in zip(grid, ref_grid))
  yy, xx = np.meshgrid(ys, xs, indexing='ij')
  angles = np.concatenate([yy.reshape(-1, 1) * bands, xx.reshape(-1, 1) * bands], axis=1)
  angles = np.repeat(angles, 2, axis=1)                        # (h*w, head_dim), pairs interleaved
  return np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32)


def apply_rope(x, sin, cos):
  """Rotates channel pairs of x (B, T, N, H) by the angles of sin/cos (T, H), in float32."""
  xf = x.astype(jnp.float32)
  pairs = xf.reshape(xf.shape[:-1] + (-1, 2))
  rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(xf.shape)
  return (xf * cos[:, None] + rotated * sin[:, None]).astype(x.dtype)


class EVA02Attention(nn.Module):
  """Self-attention with rotary embeddings on the patch tokens and an inner LayerNorm."""
  width: int
  heads: int
  eps: float
  dtype: Any = jnp.float32
  attention_impl: str = 'auto'

  def setup(self):
    dense = lambda name, bias=True: nn.Dense(self.width, use_bias=bias, dtype=self.dtype, name=name)
    self.q_proj, self.k_proj, self.v_proj = dense('q_proj'), dense('k_proj', False), dense('v_proj')
    self.norm = nn.LayerNorm(self.eps, dtype=self.dtype)
    self.proj = dense('proj')

  def __call__(self, x, sin, cos):
    """x (B, 1 + h*w, D), sin/cos (h*w, D/heads) -> (B, 1 + h*w, D)."""
    split = lambda t: t.reshape(t.shape[:-1] + (self.heads, self.width // self.heads))
    rope = lambda t: jnp.concatenate([t[:, :1], apply_rope(t[:, 1:], sin, cos)], axis=1)
    q, k, v = rope(split(self.q_proj(x))), rope(split(self.k_proj(x))), split(self.v_proj(x))
    out = dot_product_attention(q, k, v, implementation=self.attention_impl)
    return self.proj(self.norm(out.reshape(x.shape)))

  def value_path(self, x):
    """MaskCLIP: values through the inner norm and output projection, no query-key mixing."""
    return self.proj(self.norm(self.v_proj(x)))


class SwiGLU(nn.Module):
  """silu(fc1_g x) * fc1_x x -> LayerNorm -> fc2 (timm's `SwiGLU` with `norm_layer`)."""
  width: int
  hidden: int
  eps: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)
    h = jax.nn.silu(dense(self.hidden, 'fc1_g')(x)) * dense(self.hidden, 'fc1_x')(x)
    return dense(self.width, 'fc2')(nn.LayerNorm(self.eps, dtype=self.dtype, name='norm')(h))


class EVA02Block(nn.Module):
  """Pre-LN block: x + attn(norm1 x), then + SwiGLU(norm2 x)."""
  width: int
  heads: int
  mlp_dim: int
  eps: float
  dtype: Any = jnp.float32
  attention_impl: str = 'auto'

  def setup(self):
    self.norm1 = nn.LayerNorm(self.eps, dtype=self.dtype)
    self.attn = EVA02Attention(self.width, self.heads, self.eps, self.dtype, self.attention_impl)
    self.norm2 = nn.LayerNorm(self.eps, dtype=self.dtype)
    self.mlp = SwiGLU(self.width, self.mlp_dim, self.eps, self.dtype)

  def __call__(self, x, sin, cos):
    x = x + self.attn(self.norm1(x), sin, cos)
    return x + self.mlp(self.norm2(x))

  def maskclip_value(self, x):
    return self.attn.value_path(self.norm1(x))


class EVA02Blocks(nn.Module):
  """`blocks/{0..N-1}` as in timm; returns every hidden state."""
  width: int
  heads: int
  mlp_dim: int
  layers: int
  eps: float
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True

  def make_block(self, remat: Remat = False, **kw):
    return remat_layer(EVA02Block, remat)(
        self.width, self.heads, self.mlp_dim, self.eps, self.dtype, self.attention_impl, **kw)

  def setup(self):
    self.blocks = [self.make_block(self.remat, name=str(i)) for i in range(self.layers)]

  def __call__(self, x, sin, cos, num_layers: Optional[int] = None):
    """x (B, T, D) -> [input, after block 1, ..., after block n] (n = num_layers, all by
    default)."""
    return run_layers(self, self.blocks[:num_layers], self.make_block(parent=None), x, self.remat,
                      self.scan, sin, cos)

  def maskclip_value(self, x):
    return self.blocks[-1].maskclip_value(x)


class PatchEmbed(nn.Module):
  width: int
  patch_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images):
    p = self.patch_size
    return nn.Conv(self.width, (p, p), strides=p, padding='VALID', dtype=self.dtype,
                   name='proj')(images)


class EVA02VisionEncoder(nn.Module):
  """EVA02 vision tower + projection, with `clip.CLIPVisionEncoder`'s interface.

  Returns a dict:
    image_embeds: (B, E) projected class token (open_clip's `encode_image`).
    hidden_states: list of (B, 1 + h*w, D): [embeddings, block 1, ..., block N].
    taps: {layer: (B, h, w, D)} patch tokens after each layer in `out_layers` (1-based).
    dense: (B, h, w, E) MaskCLIP-path features in CLIP space (only if `dense=True`).
  """
  cfg: Any  # clip.CLIPConfig with vision_type 'eva02'
  dtype: Any = jnp.float32
  remat: Remat = False
  attention_impl: str = 'auto'
  scan: bool = True

  def setup(self):
    c, v = self.cfg, self.cfg.vision
    self.grid = (c.image_size // c.patch_size,) * 2
    self.patch_embed = PatchEmbed(v.width, c.patch_size, self.dtype)
    self.cls_token = self.param('cls_token', nn.initializers.normal(1e-6), (1, 1, v.width))
    self.pos_embed = self.param('pos_embed', nn.initializers.normal(0.02),
                                (1, 1 + self.grid[0] * self.grid[1], v.width))
    self.blocks = EVA02Blocks(v.width, v.heads, v.mlp_dim, v.layers, v.layer_norm_eps, self.dtype,
                              self.remat, self.attention_impl, self.scan)
    self.norm = nn.LayerNorm(v.layer_norm_eps, dtype=self.dtype)
    self.head = nn.Dense(c.projection_dim, dtype=self.dtype)

  def embed(self, images):
    """images (B, H, W, 3) normalised -> tokens (B, 1 + h*w, D) and the grid (h, w)."""
    return vit_tokens(images, self.patch_embed, self.cls_token[0, 0], self.pos_embed[0], self.grid,
                      self.cfg.patch_size, self.dtype)

  def __call__(self, images, out_layers: Sequence[int] = (), dense: bool = False,
               embeds: bool = True):
    x, (h, w) = self.embed(images)
    v = self.cfg.vision
    sin, cos = rope_tables((h, w), self.grid, v.width // v.heads)
    states = self.blocks(x, jnp.asarray(sin), jnp.asarray(cos),
                         blocks_needed(v.layers, out_layers, dense, embeds))
    b = images.shape[0]
    out = dict(hidden_states=states, grid=(h, w))
    if embeds:
      out['image_embeds'] = self.head(self.norm(states[-1][:, 0]))
    out['taps'] = {l: states[l][:, 1:].reshape(b, h, w, -1) for l in out_layers}
    if dense:
      out['dense'] = self.maskclip_dense(states[v.layers - 1]).reshape(b, h, w, -1)
    return out

  def maskclip_dense(self, penultimate):
    """(B, 1 + h*w, D) input of the last block -> (B, h*w, E) per-token CLIP-space features."""
    return self.head(self.norm(self.blocks.maskclip_value(penultimate[:, 1:])))
