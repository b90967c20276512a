"""UniMatch's strong views made on the accelerator, inside the train step
(data.strong_view.where='device').

The host ships one geometric (weak) view per unlabeled image; the step draws, per image and from
its own RNG, what `transforms.strong_photometric` and `transforms.cutmix_box` draw on the host, from
the same distributions, in the same order of operations:
  colour jitter with probability color_jitter_p: brightness, contrast, saturation factors uniform
    in [1 - x, 1 + x], then a hue shift uniform in [-hue, hue] of the colour circle (rounded to
    OpenCV's 2-degree hue units, as the host does);
  grayscale with probability grayscale_p;
  Gaussian blur with probability blur_p, sigma uniform in [0.1, 2], OpenCV's kernel size for 8-bit
    images (2 round(3 sigma) + 1 taps) and its reflect-101 border;
  a CutMix box with probability cutmix_p: area uniform in [0.02, 0.4] of the crop, aspect uniform
    in [0.3, 1/0.3], the first of 64 draws that fits (the host redraws until one fits).
Where the arithmetic differs from the host's: the hue is rotated in float HSV (OpenCV rotates
8-bit HSV, whose round trip loses up to a few levels per channel), the gray value and blur are
computed in float and rounded once (OpenCV uses fixed-point weights); each step's values are
rounded to 8 bits where the host's are, so the views are uint8 images as the host's are.
"""
import dataclasses
from typing import Dict, Tuple

import jax
import jax.numpy as jnp

GRAY = (0.299, 0.587, 0.114)      # ITU-R 601, as OpenCV's RGB2GRAY
MAX_SIGMA = 2.0
MAX_RADIUS = 6                    # OpenCV's radius round(3 sigma) at sigma 2
BOX_AREA = (0.02, 0.4)
BOX_RATIO = (0.3, 1 / 0.3)
BOX_CANDIDATES = 64


# Where the strong views are made: in the train step from its RNG (the host ships the weak view
# only) or by numpy/OpenCV in the input pipeline (`transforms.unlabeled_train`).
PLACES = ('device', 'host')


@dataclasses.dataclass(frozen=True)
class StrongViewConfig:
  """`data.strong_view`: where the views are made (PLACES) and UniMatch's probabilities and
  colour-jitter strengths (brightness, contrast, saturation, hue)."""
  where: str = 'device'
  color_jitter: Tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.25)
  color_jitter_p: float = 0.8
  grayscale_p: float = 0.2
  blur_p: float = 0.5
  cutmix_p: float = 0.5

  def __post_init__(self):
    if self.where not in PLACES:
      raise ValueError(f'data.strong_view.where must be one of {PLACES}, got {self.where!r}')


def draw(key, size: int, cfg: StrongViewConfig) -> Dict[str, jax.Array]:
  """One view's random choices (scalars): jitter, brightness, contrast, saturation, hue_shift
  (OpenCV units, 180 a turn), gray, blur, sigma, box and its (x, y, w, h)."""
  keys = jax.random.split(key, 10)
  b, c, s, h = cfg.color_jitter
  u = lambda k, lo, hi: jax.random.uniform(k, (), jnp.float32, lo, hi)
  return dict(jitter=jax.random.uniform(keys[0]) < cfg.color_jitter_p,
              brightness=u(keys[1], 1 - b, 1 + b), contrast=u(keys[2], 1 - c, 1 + c),
              saturation=u(keys[3], 1 - s, 1 + s), hue_shift=jnp.round(u(keys[4], -h, h) * 180),
              gray=jax.random.uniform(keys[5]) < cfg.grayscale_p, blur=jax.random.uniform(keys[6])
              < cfg.blur_p, sigma=u(keys[7], 0.1,
                                    MAX_SIGMA), box=jax.random.uniform(keys[8]) < cfg.cutmix_p,
              **dict(zip(('x', 'y', 'w', 'h'), box_at(keys[9], size))))


def box_at(key, size: int):
  """(x, y, w, h) int32 of a CutMix box that fits the (size, size) crop: the first of
  BOX_CANDIDATES draws that fits, as UniMatch redraws until one fits (about a third of the draws
  fit; all of them missing, which leaves no box, has a probability below 1e-9)."""
  ka, kr, kx, ky = jax.random.split(key, 4)
  n = (BOX_CANDIDATES,)
  area = jax.random.uniform(ka, n, jnp.float32, *BOX_AREA) * size * size
  ratio = jax.random.uniform(kr, n, jnp.float32, *BOX_RATIO)
  w, h = jnp.sqrt(area / ratio).astype(jnp.int32), jnp.sqrt(area * ratio).astype(jnp.int32)
  x, y = jax.random.randint(kx, n, 0, size), jax.random.randint(ky, n, 0, size)
  fits = (x + w <= size) & (y + h <= size)
  first = jnp.argmax(fits)
  return x[first], y[first], jnp.where(fits[first], w[first],
                                       0), jnp.where(fits[first], h[first], 0)


def gray(x):
  """(..., 3) -> (...,) float luma."""
  return x[..., 0] * GRAY[0] + x[..., 1] * GRAY[1] + x[..., 2] * GRAY[2]


def to_u8(x):
  """As a float image's cast to uint8 on the host: truncated after clipping to [0, 255]."""
  return jnp.floor(jnp.clip(x, 0, 255))


def rgb_to_hsv(x):
  """(..., 3) RGB in [0, 1] -> hue in turns [0, 1), saturation, value."""
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v, lo = x.max(-1), x.min(-1)
  delta = v - lo
  safe = jnp.where(delta > 0, delta, 1.0)
  hue = jnp.where(v == r,
                  (g - b) / safe, jnp.where(v == g, 2.0 + (b - r) / safe, 4.0 +
                                            (r - g) / safe)) / 6.0
  hue = jnp.where(delta > 0, hue % 1.0, 0.0)
  return hue, jnp.where(v > 0, delta / jnp.where(v > 0, v, 1.0), 0.0), v


def hsv_to_rgb(h, s, v):
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  i = i.astype(jnp.int32) % 6
  pick = lambda *c: jnp.select([i == k for k in range(6)], c)
  return jnp.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], -1)


def color_jitter(x, p):
  """torchvision-style ColorJitter in a fixed order on (H, W, 3) float values of 8-bit levels."""
  x = jnp.clip(x * p['brightness'], 0, 255)
  mean = jnp.round(gray(to_u8(x))).mean()
  x = jnp.clip((x - mean) * p['contrast'] + mean, 0, 255)
  g = jnp.round(gray(to_u8(x)))[..., None]
  x = to_u8((x - g) * p['saturation'] + g)
  hue, sat, val = rgb_to_hsv(x / 255.0)
  shifted = jnp.round(hsv_to_rgb((hue + p['hue_shift'] / 180.0) % 1.0, sat, val) * 255.0)
  return jnp.where(p['hue_shift'] != 0, shifted, x)


def gaussian_blur(x, sigma):
  """OpenCV's GaussianBlur(sigma) of an 8-bit (H, W, 3) image: 2 round(3 sigma) + 1 taps, borders
  reflected without repeating the edge (BORDER_REFLECT_101), rounded."""
  offsets = jnp.arange(-MAX_RADIUS, MAX_RADIUS + 1, dtype=jnp.float32)
  radius = jnp.round(3 * sigma)
  taps = jnp.where(jnp.abs(offsets) <= radius, jnp.exp(-offsets ** 2 / (2 * sigma ** 2)), 0.0)
  taps = taps / taps.sum()
  pad = jnp.pad(x, ((MAX_RADIUS, MAX_RADIUS), (MAX_RADIUS, MAX_RADIUS), (0, 0)), mode='reflect')
  n = 2 * MAX_RADIUS + 1
  rows = sum(taps[i] * pad[i:i + x.shape[0]] for i in range(n))
  return jnp.round(sum(taps[i] * rows[:, i:i + x.shape[1]] for i in range(n)))


def photometric(x, p):
  """One strong view of an (H, W, 3) float image of 8-bit levels under the choices `p`."""
  x = jnp.where(p['jitter'], color_jitter(x, p), x)
  x = jnp.where(p['gray'], jnp.repeat(jnp.round(gray(x))[..., None], 3, -1), x)
  return jnp.where(p['blur'], gaussian_blur(x, p['sigma']), x)


def box_mask(p, size: int):
  yy, xx = jnp.arange(size)[:, None], jnp.arange(size)[None, :]
  inside = (yy >= p['y']) & (yy < p['y'] + p['h']) & (xx >= p['x']) & (xx < p['x'] + p['w'])
  return inside & p['box']


def make_strong_views(images_w, key, cfg: StrongViewConfig):
  """Weak views (B, S, S, 3) uint8 -> dict(image_s1, image_s2 (B, S, S, 3) uint8, box1, box2
  (B, S, S) bool), each image's choices drawn from `key` folded with its index and view."""
  b, size = images_w.shape[0], images_w.shape[1]
  out = {}
  for view in (1, 2):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, view), i))(jnp.arange(b))
    p = jax.vmap(lambda k: draw(k, size, cfg))(keys)
    out[f'image_s{view}'] = jax.vmap(photometric)(images_w.astype(jnp.float32), p).astype(jnp.uint8)
    out[f'box{view}'] = jax.vmap(lambda q: box_mask(q, size))(p)
  return out
