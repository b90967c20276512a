"""Simple feature pyramid (ViTDet) from ViT taps on the token grid to four levels (4x ... 1/2x)."""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

STRIDES = (4, 8, 16, 32)


def group_norm(dim: int, dtype, name=None):
  """GroupNorm(32) as in Mask2Former; fewer groups for widths below 32 (tiny test models)."""
  return nn.GroupNorm(num_groups=min(32, dim), dtype=dtype, name=name)


class SimpleFeaturePyramid(nn.Module):
  """Taps (B, h, w, C) of three backbone layers on the token grid -> {4, 8, 16, 32: (B, ., ., dim)}.

  Level s is the token grid scaled by t/s, t the power of two nearest to the patch size: image
  strides 4, 8, 16, 32 for patches 8 or 16; for patch 14 (EVA02) t = 16 and the levels lie at
  strides 3.5, 7, 14, 28, so that every level keeps an integer size for any input divisible by
  the patch (the 1/2x level rounds up). Strides 4 and 8 come from the first and
  second tap, 16 and 32 from the last (ViTDet: 2x2 transposed convs upsample, max-pooling
  downsamples); each level then gets a 1x1 conv + GroupNorm to `dim` channels.
  """
  dim: int = 256
  patch_size: int = 16
  dtype: Any = jnp.float32

  @property
  def token_stride(self) -> int:
    return 2 ** int(round(math.log2(self.patch_size)))

  def resample(self, x, factor: float, name: str):
    """Upsample by `factor` (power of 2) with 2x2 transposed convs + GN + GELU between, or
    max-pool."""
    if factor < 1:
      k = int(round(1 / factor))
      return nn.max_pool(x, (k, k), (k, k), padding='SAME')
    c = x.shape[-1]
    for i in range(int(round(math.log2(factor)))):
      if i:
        x = nn.gelu(group_norm(c, self.dtype, f'{name}_norm{i}')(x))
      c = max(c // 2, 1)
      x = nn.ConvTranspose(c, (2, 2), (2, 2), dtype=self.dtype, name=f'{name}_up{i}')(x)
    return x

  @nn.compact
  def __call__(self, taps: Sequence[Any]):
    sources = (taps[0], taps[1], taps[2], taps[2])
    out = {}
    for stride, x in zip(STRIDES, sources):
      x = self.resample(x, self.token_stride / stride, f'level{stride}')
      x = nn.Conv(self.dim, (1, 1), use_bias=False, dtype=self.dtype, name=f'proj{stride}')(x)
      out[stride] = group_norm(self.dim, self.dtype, f'norm{stride}')(x)
    return out
