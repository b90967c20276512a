r"""Demo: the small world. Synthetic scenes, the tiny CLIP pretrained on their captions, CPU,
minutes.

  python -m hvl_jax.main --config configs/demo.py --workdir runs/demo

The real recipe where it fits a CPU: the shipped tiny CLIP (hvl_jax/data/tiny_clip,
tools/pretrain_clip.py) with zero-shot relevance gating, the backbone at 0.1x the learning rate,
gradients clipped at a global norm of 0.01; few labels (16 images) and many unlabeled ones (1024).
The gating reads the image and its crops ('crops'): the tiny CLIP's dense features do not
localise (docs/method.md). Evaluation also scores the tiny CLIP alone (the `zero_shot` entry of
`evals`, eval_zero_shot.json).
"""
from configs import base
from hvl_jax.common.config_tree import to_tree
from hvl_jax.data import synthetic
from hvl_jax.inference.evaluator import EvalConfig


def get_config():
  c = base.get_config()
  c.data.name = 'synthetic'
  c.data.num_classes = 5
  c.data.crop_size = 64
  c.data.img_scale = ()            # 64-pixel scenes: a ratio of the native size
  c.data.rcs_min_pixels = 20
  c.data.labeled_batch = 4
  c.data.unlabeled_batch = 4
  c.data.num_workers = 0
  c.data.synthetic_labeled = 16
  c.data.synthetic_unlabeled = 1024
  # 64 scenes left a 2.4-point spread on one network (docs/small_world.md)
  c.data.synthetic_val = 1024
  # The sizes of the shipped tiny CLIP (a random CLIP of these sizes where it is not loaded).
  c.model.clip.update(
      dict(pretrained=synthetic.TINY_CLIP, vision_width=64, vision_layers=4, vision_heads=4,
           vision_mlp_dim=128, patch_size=8, image_size=64, text_width=64, text_layers=2,
           text_heads=4, text_mlp_dim=128, vocab_size=181, context_length=32, projection_dim=64))
  c.model.out_layers = (2, 3, 4)
  c.model.relevance.update(dict(mode='crops', gating='hard', threshold=0.7))
  c.model.hidden_dim = 64
  c.model.decoder.instance_queries = 8
  c.model.compute.dtype = 'float32'
  base.set_remat(c, 'none')       # tiny: no rematerialisation
  c.model.pixel_decoder.update(dict(layers=2, heads=4, ffn_dim=128))
  c.model.decoder.update(dict(layers=3, heads=4, ffn_dim=128))
  c.model.htqg.mlp_hidden = 64
  c.loss.supervised.num_points = 1024
  c.optim.lr = 5e-4
  c.optim.warmup_steps = 20
  c.loss.consistency.conf_threshold = 0.9
  c.train.steps = 500
  c.train.log_every = 20
  c.train.ckpt_every = 250
  c.inference.protocol = 'whole'
  c.evals.zero_shot = to_tree(EvalConfig(kind='zero_shot'))   # the tiny CLIP alone
  return c
