"""The HVL network: images -> per-stage class logits + mask logits.

  backbone E_I (CLIP ViT, taps) -> simple feature pyramid -> pixel decoder + PTRM
  (textual queries from the HTQG, gated by relevance s_k) -> DQTD -> predictions.

Also holds the frozen reference encoder E_I^0 (zero-shot relevance, L_mask) and
the frozen text encoder E_T. `ModelConfig` holds the `model` settings and their defaults,
`build_model` turns the config into an `HVL` module and `init_params` loads pretrained CLIP
weights into it.
"""
import dataclasses
import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hvl_jax.common import config_tree
from hvl_jax.models import zero_shot
from hvl_jax.models.backbones import clip as clip_lib
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones import pretrained
from hvl_jax.models.backbones import registry
from hvl_jax.models.compute_settings import ComputeConfig
from hvl_jax.models.decoder import DQTD, DecoderConfig
from hvl_jax.models.pixel_decoder import PixelDecoder, PixelDecoderConfig
from hvl_jax.models.pyramid import SimpleFeaturePyramid
from hvl_jax.models.queries import HTQG, HTQGConfig, prompt_layout, template_layout, trim_to_longest
from hvl_jax.ops.layer_scan import Remat, check_remat
from hvl_jax.ops.sampling import l2_normalize, patch_majority

# Parameter subtrees that never train (excluded from the optimizer).
FROZEN = ('text_encoder', 'reference_encoder', 'logit_scale')


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """`model`: the network's settings, one nested config per module (the paper's recipe).

  backbone: 'clip' (HF CLIP checkpoints) | 'eva02_clip_l14' (open_clip EVA02-CLIP); out_layers:
  the backbone blocks tapped for the pyramid; queries: 'htqg' | 'random' (Table 3's Mask2Former
  baseline); freeze_backbone: E_I does not train; backbone_remat: what the backbone's
  rematerialised blocks keep for the backward pass ('none' or a `layer_scan.REMAT_POLICIES`
  name: 'nothing_saveable' recomputes a block whole, least memory and the fastest measured on a
  GPU, benchmarks/RESULTS.md), as the pixel decoder's and the DQTD's `remat` fields.
  """
  backbone: str = 'clip'
  out_layers: Tuple[int, ...] = (4, 8, 12)
  hidden_dim: int = 256
  queries: str = 'htqg'
  freeze_backbone: bool = False
  backbone_remat: Remat = 'nothing_saveable'
  compute: ComputeConfig = ComputeConfig(dtype='bfloat16')
  clip: registry.CLIPSource = registry.CLIPSource()
  htqg: HTQGConfig = HTQGConfig()
  pixel_decoder: PixelDecoderConfig = PixelDecoderConfig(remat='nothing_saveable')
  decoder: DecoderConfig = DecoderConfig(remat='nothing_saveable')
  relevance: zero_shot.RelevanceConfig = zero_shot.RelevanceConfig()

  def __post_init__(self):
    if self.queries not in ('htqg', 'random'):
      raise ValueError(f"model.queries must be 'htqg' or 'random', got {self.queries!r}")
    check_remat(self.backbone_remat, 'model.backbone_remat')


# The settings the network module reads, as ModelConfig holds them.
NETWORK_SETTINGS = ('out_layers', 'hidden_dim', 'queries', 'freeze_backbone', 'backbone_remat',
                    'compute', 'htqg', 'pixel_decoder', 'decoder', 'relevance')


@dataclasses.dataclass(frozen=True)
class HVLConfig:
  """Static description of the network (hashable: tuples and frozen dataclasses only).

  `build_model` makes it: the token layouts from the class names and the CLIP tokenizer, the
  sizes of the CLIP checkpoint, the NETWORK_SETTINGS of `ModelConfig`.
  """
  clip: clip_lib.CLIPConfig
  num_classes: int               # K: the classes of the text queries (and of s_k)
  prompt_ids: Tuple[Tuple[int, ...], ...]
  prompt_eos: Tuple[int, ...]
  template_ids: Tuple[Tuple[int, ...], ...]
  background_classes: Tuple[int, ...]
  out_layers: Tuple[int, ...]
  hidden_dim: int
  queries: str
  freeze_backbone: bool
  backbone_remat: Remat
  compute: ComputeConfig
  htqg: HTQGConfig
  pixel_decoder: PixelDecoderConfig
  decoder: DecoderConfig
  relevance: zero_shot.RelevanceConfig
  # K of the class head, the training classes; None = num_classes. They differ only when other
  # class names are given at inference (open-vocabulary, hvl_jax/inference/open_vocabulary.py).
  head_classes: Optional[int] = None

  @property
  def classifier_classes(self) -> int:
    return self.num_classes if self.head_classes is None else self.head_classes

  @property
  def num_levels(self) -> int:
    return query_levels(self)


def query_levels(settings) -> int:
  """Class-query levels of a `ModelConfig` or `HVLConfig` (0 for the random-query ablation)."""
  return settings.htqg.levels if settings.queries == 'htqg' else 0


class HVL(nn.Module):
  """The whole network; see the module docstring."""
  cfg: HVLConfig

  def setup(self):
    c = self.cfg
    compute = c.compute
    dtype = compute.jnp_dtype
    tower = lambda remat: dict(cfg=c.clip, dtype=dtype, remat=remat, attention_impl=compute.
                               attention_impl, scan=compute.scan)
    self.backbone = registry.vision_encoder(**tower(c.backbone_remat))
    self.reference_encoder = registry.vision_encoder(**tower(False))
    self.text_encoder = clip_lib.CLIPTextEncoder(**tower(False))
    self.logit_scale = self.param('logit_scale', nn.initializers.constant(np.log(100.0)), ())
    self.pyramid = SimpleFeaturePyramid(dim=c.hidden_dim, patch_size=c.clip.patch_size, dtype=dtype)
    if c.queries == 'htqg':
      self.htqg = HTQG(text_width=c.clip.text.width, embed_dim=c.clip.projection_dim,
                       dim=c.hidden_dim, config=c.htqg, dtype=dtype)
    self.pixel_decoder = PixelDecoder(dim=c.hidden_dim, mask_dim=c.hidden_dim,
                                      config=c.pixel_decoder, compute=compute)
    self.decoder = DQTD(num_classes=c.classifier_classes, num_levels=c.num_levels, dim=c.hidden_dim,
                        mask_dim=c.hidden_dim, config=c.decoder, compute=compute)

  # -- Encoders --------------------------------------------------------------

  def encode(self, images, dense: bool = False, taps: bool = True):
    """E_I: images (B, H, W, 3) CLIP-normalised -> dict(taps [3 x (B, H/16, W/16, C)] (empty
    without `taps`), dense (B, h, w, E) or None). Only the blocks these read run."""
    layers = self.cfg.out_layers if taps else ()
    out = self.backbone(images, layers, dense=dense, embeds=False)
    return dict(taps=[out['taps'][l] for l in layers], dense=out.get('dense'))

  def reference_features(self, images, dense: bool = True, embeds: bool = False):
    """E_I^0 (frozen), no gradient: dict(dense (B, h, w, E) if `dense`, image_embeds (B, E) if
    `embeds`). Dense features alone skip the last block (they take its input)."""
    out = self.reference_encoder(images, (), dense=dense, embeds=embeds)
    return jax.lax.stop_gradient({k: out[k] for k in ('dense', 'image_embeds') if k in out})

  def fixed_text_embeddings(self):
    """t^CLIP (K, E): the normalised embeddings of the fixed template per class, a constant of the
    frozen text encoder (computed once per start in training), no gradient."""
    t_clip = self.text_encoder(jnp.asarray(self.cfg.template_ids, jnp.int32))['text_embeds']
    return jax.lax.stop_gradient(l2_normalize(t_clip.astype(jnp.float32)))

  def text_queries(self, t_clip=None):
    """Class text embeddings and HTQG outputs (batch independent).

    Returns dict: t_clip (K, E) (`fixed_text_embeddings`, unless given) and, for queries='htqg',
    level_queries (L, K, D), t_hat (K, E), phi (K, E).
    """
    c = self.cfg
    out = dict(t_clip=self.fixed_text_embeddings() if t_clip is None else t_clip)
    if c.queries == 'htqg':
      ids = jnp.asarray(c.prompt_ids, jnp.int32)
      embeds = self.htqg.insert_prompt(self.text_encoder.token_embeddings(ids))
      t = self.text_encoder(None, embeds, jnp.asarray(c.prompt_eos, jnp.int32))['text_embeds']
      out.update(self.htqg(t))
    return out

  def image_relevance(self, images, t_clip, valid=None):
    """s_k of unlabeled images (B, K); valid (B, H, W) bool marks the image's own pixels
    (False on padding), which alone count in the dense max.

    relevance.mode 'all' turns the gating off (s_k = 1, no reference-encoder pass), e.g. for
    randomly initialised CLIPs whose zero-shot predictions carry no information.
    """
    if self.cfg.relevance.mode == 'all':
      return jnp.ones((images.shape[0], self.cfg.num_classes), jnp.float32)
    scale = jnp.exp(jax.lax.stop_gradient(self.logit_scale))
    if self.cfg.relevance.mode == 'crops':     # image-level softmax, max over the views
      views = zero_shot.crop_views(images)
      embeds = self.reference_features(views.reshape((-1,) + images.shape[1:]), dense=False,
                                       embeds=True)['image_embeds']
      probs = zero_shot.image_class_probs(embeds.astype(jnp.float32), t_clip, scale)
      return self.keep_background(probs.reshape(views.shape[0], images.shape[0], -1).max(0))
    dense = self.cfg.relevance.mode == 'dense'
    reference = self.reference_features(images, dense=dense, embeds=not dense)
    if valid is not None and dense:
      valid = patch_majority(valid, images.shape[1] // reference['dense'].shape[1])
    f32 = lambda key: reference[key].astype(jnp.float32) if key in reference else None
    s = zero_shot.class_relevance(f32('dense'), f32('image_embeds'), t_clip, scale,
                                  self.cfg.relevance.mode, valid)
    return self.keep_background(s)

  def present_classes(self, relevance):
    """Classes judged present (B, K) bool: s_k >= relevance.threshold, and always the most
    relevant class, so that no image loses every class query."""
    top = relevance >= relevance.max(-1, keepdims=True)
    return (relevance >= self.cfg.relevance.threshold) | top

  def keep_background(self, relevance):
    bg = np.zeros((self.cfg.num_classes,), bool)
    bg[list(self.cfg.background_classes)] = True
    return jnp.where(jnp.asarray(bg)[None], 1.0, relevance)

  # -- Heads -----------------------------------------------------------------

  def decode(self, taps: Sequence[jax.Array], relevance: Optional[jax.Array], text: dict,
             every_layer_rows: Optional[int] = None):
    """Pyramid -> pixel decoder (+PTRM) -> DQTD.

    Args:
      taps: 3 backbone maps (B, h, w, C).
      relevance: (B, K) s_k in [0, 1] (ignored for queries='random').
      text: output of `text_queries`.
      every_layer_rows: R, the leading rows whose every DQTD layer's prediction is read (None =
        all; 0: the last prediction alone, with less work, `decoder.DQTD`).
    Returns:
      list of (cls_logits (R, Q, K+1), mask_logits (R, H/4, W/4, Q)) per layer, the last of all B
      rows.
    """
    features = self.pyramid(taps)
    q_text, keep = None, None
    if self.cfg.queries == 'htqg':
      q = text['level_queries']                                          # (L, K, D)
      if self.cfg.relevance.gating == 'hard':
        keep = self.present_classes(relevance)
        q_text = jnp.broadcast_to(q[None], (relevance.shape[0],) + q.shape)
      else:
        q_text = relevance[:, None, :, None].astype(q.dtype) * q[None]   # (B, L, K, D)
    px = self.pixel_decoder(features, q_text, keep)
    class_queries = None
    if px['queries'] is not None:
      b = px['queries'].shape[0]
      class_queries = px['queries'].reshape(b, -1, self.cfg.hidden_dim)  # level-major (l, k)
    return self.decoder(class_queries, px['multi_scale'], px['mask_features'], keep,
                        every_layer_rows)

  def __call__(self, images, relevance=None, text=None, valid=None,
               every_layer_rows: Optional[int] = None):
    """images (B, H, W, 3) -> dict(predictions, text, relevance, present).

    relevance: (B, K) s_k, None = zero-shot from E_I^0 over the `valid` (B, H, W) pixels (the
    output holds the s_k used; None for queries='random');
    text: `text_queries()` computed once for many calls (they do not depend on the images);
    present: (B, K) bool classes judged present by the gating (None without gating);
    every_layer_rows: as in `decode`.
    """
    text = self.text_queries() if text is None else text
    present = None
    if relevance is None and self.cfg.queries == 'htqg':
      relevance = self.image_relevance(images, text['t_clip'], valid)
    if self.cfg.queries == 'htqg' and self.cfg.relevance.mode != 'all':
      present = self.present_classes(relevance)
    enc = self.encode(images)
    return dict(predictions=self.decode(enc['taps'], relevance, text, every_layer_rows), text=text,
                relevance=relevance, present=present)


# -- Construction ------------------------------------------------------------

def model_config(config) -> ModelConfig:
  """The `model` subtree of the config as a `ModelConfig` (validated)."""
  return config_tree.build(ModelConfig, config.model, 'model')


def build_model(config, class_names: Sequence[str], clip: Optional[clip_weights.CLIP] = None,
                open_vocabulary: bool = False):
  """HVL module from the config; `clip` (pretrained or random) supplies sizes and tokenizer.

  The one reader of `config.model` (`model_config`). The text queries are of `class_names`,
  which are the config's data.num_classes classes but with `open_vocabulary`, where any names
  are queried by a network whose class head keeps the data.num_classes training classes (and
  data.background_classes index `class_names`).
  """
  data = config.data
  if not open_vocabulary and len(class_names) != data.num_classes:
    raise ValueError(f'data.num_classes={data.num_classes} but {len(class_names)} class names')
  settings = model_config(config)
  if clip is None:
    clip = pretrained.load(settings.clip, settings.backbone, config.seed)
  if data.crop_size % clip.config.patch_size:
    raise ValueError(f'data.crop_size={data.crop_size} is not divisible by the backbone\'s patch '
                     f'size {clip.config.patch_size}')
  ids, eos = prompt_layout(clip.tokenizer, class_names, settings.htqg.prompt_tokens,
                           clip.config.context_length)
  ids = trim_to_longest(ids, eos)
  templates = template_layout(clip.tokenizer, class_names)
  templates = trim_to_longest(templates, clip_lib.eos_positions(templates,
                                                                clip.config.eos_token_id))
  as_tuple = lambda a: tuple(map(tuple, a.tolist()))
  cfg = HVLConfig(
      clip=clip.config, num_classes=len(class_names), prompt_ids=as_tuple(ids),
      prompt_eos=tuple(eos.tolist()), template_ids=as_tuple(templates),
      background_classes=tuple(data.background_classes),
      head_classes=data.num_classes if open_vocabulary else None,
      **{name: getattr(settings, name) for name in NETWORK_SETTINGS})
  return HVL(cfg), clip


# One jitted program (clip_weights.init_params) with the model static, so that a state's shapes
# (jax.eval_shape) and the state itself share one trace of it in a process.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _initialise(model: HVL, image_size: int, rng):
  """The initialisers only, not the forward pass."""
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  relevance = jax.ShapeDtypeStruct((1, model.cfg.num_classes), jnp.float32)
  return model.lazy_init(rng, images, relevance)['params']


def init_params(model: HVL, clip: clip_weights.CLIP, rng, image_size: int):
  """Random init of the heads; CLIP weights into backbone, reference encoder and text encoder."""
  params = dict(_initialise(model, image_size, rng))
  params['backbone'] = clip.params['vision']
  # A copy, not the same buffers: the reference stays frozen while the backbone trains (and
  # donated train states must not alias).
  params['reference_encoder'] = jax.tree.map(jnp.copy, clip.params['vision'])
  params['text_encoder'] = clip.params['text']
  params['logit_scale'] = clip.params['logit_scale']
  return params
