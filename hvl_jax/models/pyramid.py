"""Simple feature pyramid (ViTDet) from ViT taps at the patch stride to strides 4, 8, 16, 32."""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

STRIDES = (4, 8, 16, 32)


def group_norm(dim: int, dtype, name=None):
  """GroupNorm(32) as in Mask2Former; fewer groups for widths below 32 (tiny test models)."""
  return nn.GroupNorm(num_groups=min(32, dim), dtype=dtype, name=name)


class SimpleFeaturePyramid(nn.Module):
  """Taps (B, h, w, C) of three backbone layers at stride `patch_size` -> {4, 8, 16, 32: (B, H/s, W/s, dim)}.

  Strides 4 and 8 come from the first and second tap, 16 and 32 from the last (as in
  ViTDet, where 2x2 transposed convs upsample and max-pooling downsamples); each level
  then gets a 1x1 conv + GroupNorm to `dim` channels. For ViT-B/16: tap 1 upsampled 4x,
  tap 2 upsampled 2x, tap 3 as is and max-pooled 2x.
  """
  dim: int = 256
  patch_size: int = 16
  dtype: Any = jnp.float32

  def resample(self, x, factor: float, name: str):
    """Upsample by `factor` (power of 2) with 2x2 transposed convs + GN + GELU between, or max-pool."""
    if factor < 1:
      k = int(round(1 / factor))
      return nn.max_pool(x, (k, k), (k, k))
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
      factor = self.patch_size / stride
      if factor != 1 and abs(math.log2(factor) - round(math.log2(factor))) > 1e-9:
        raise ValueError(f'patch size {self.patch_size} cannot reach stride {stride} by factors of 2')
      x = self.resample(x, factor, f'level{stride}')
      x = nn.Conv(self.dim, (1, 1), use_bias=False, dtype=self.dtype, name=f'proj{stride}')(x)
      out[stride] = group_norm(self.dim, self.dtype, f'norm{stride}')(x)
    return out
