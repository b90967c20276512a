"""The CLIP a config names: `model.clip.pretrained` (HF CLIP or open_clip EVA02-CLIP), or a
random CLIP of the `model.clip` sizes when it is ''."""
from hvl_jax.models.backbones import clip_weights
from hvl_jax.models.backbones import eva02_weights
from hvl_jax.models.backbones import registry


def load(config) -> clip_weights.CLIP:
  """Weights, sizes and tokenizer of the config's backbone."""
  c, backbone = config.model.clip, config.model.backbone
  cfg = registry.clip_config(c, backbone)   # also checks the backbone name
  if not c.pretrained:
    return clip_weights.random_clip(cfg, seed=config.seed)
  if backbone == 'eva02_clip_l14':
    return eva02_weights.load_eva02_clip(c.pretrained, c.tokenizer)
  return clip_weights.load_clip(c.pretrained)
