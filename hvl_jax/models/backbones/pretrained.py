"""The CLIP a config names: `model.clip.pretrained` (HF CLIP or open_clip EVA02-CLIP), or a
random CLIP of the `model.clip` sizes when it is ''."""
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones import eva02_weights
from hvl_jax.models.backbones import registry


def load(source: registry.CLIPSource, backbone: str, seed: int = 0) -> clip_weights.CLIP:
  """Weights, sizes and tokenizer of `source` for the `model.backbone` name (a random CLIP's
  weights from `seed`)."""
  cfg = registry.clip_config(source, backbone)   # also checks the backbone name
  if not source.pretrained:
    return clip_weights.random_clip(cfg, seed=seed)
  if backbone == 'eva02_clip_l14':
    return eva02_weights.load_eva02_clip(source.pretrained, source.tokenizer)
  return clip_weights.load_clip(source.pretrained)
