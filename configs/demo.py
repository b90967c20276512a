r"""Demo: synthetic scenes, a tiny random CLIP, CPU, minutes.

  python -m hvl_jax.main --config configs/demo.py --workdir runs/demo
"""
from configs import base


def get_config():
  c = base.get_config()
  c.data.name = 'synthetic'
  c.data.num_classes = 5
  c.data.crop_size = 64
  c.data.labeled_batch = 4
  c.data.unlabeled_batch = 4
  c.data.num_workers = 0
  c.data.synthetic_labeled = 32
  c.model.clip.update(dict(
      pretrained='', vision_width=64, vision_layers=4, vision_heads=4, vision_mlp_dim=128,
      patch_size=8, image_size=64, text_width=64, text_layers=2, text_heads=4, text_mlp_dim=128,
      vocab_size=1000, context_length=24, projection_dim=64))
  c.model.out_layers = (2, 3, 4)
  # A random CLIP's zero-shot relevance is noise: no gating in the demo.
  c.relevance.mode = 'all'
  c.model.hidden_dim = 64
  c.model.instance_queries = 8
  c.model.dtype = 'float32'
  c.model.remat_backbone = False   # tiny model: no rematerialisation anywhere
  c.model.remat_pixel_decoder = False
  c.model.remat_decoder = False
  c.model.pixel_decoder.update(dict(layers=2, heads=4, ffn_dim=128))
  c.model.decoder.update(dict(layers=3, heads=4, ffn_dim=128))
  c.model.htqg.mlp_hidden = 64
  c.loss.num_points = 1024
  c.optim.lr = 5e-4
  c.optim.backbone_lr_mult = 1.0   # the demo's CLIP is random: the backbone learns from scratch
  c.semi.conf_threshold = 0.9
  c.optim.clip_norm = 1.0
  c.optim.warmup_steps = 20
  c.train.steps = 500
  c.train.log_every = 20
  c.train.ckpt_every = 250
  c.data.img_scale = ()            # 64-pixel scenes: a ratio of the native size
  c.data.rcs_min_pixels = 20
  c.inference.protocol = 'whole'
  return c
