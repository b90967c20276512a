r"""Your own dataset: a folder of photos, a few index-PNG labels and a list of class names, one GPU.

  python -m hvl_jax.main --config configs/folder.py --workdir runs/mine
  --config.data.root=/data/mine

What a user sets:
  data.root       the folder: classes.txt, images/{train,val}/, labels/{train,val}/ and optionally
                  splits/labeled.txt (the layout and the reading rules: docs/data.md).
  the backbone    optional: CLIP ViT-B/16 by default, EVA02-CLIP-L/14 with
    `configs/folder.py:eva02l`.

Everything else is derived from the folder: the class names and their number from classes.txt,
the background class from the class named data.background_name ('background'), if there is one.
The recipe is the paper's for VOC (section 4.1): 512 crops after a keep-ratio rescale to
data.img_scale, 8 labeled + 8 unlabeled images a step, rare-class sampling, 80 epochs of the
unlabeled images (train.steps overrides), evaluation on 512 windows after a resize of the short
side to 512.

`configs/folder.py:tiny` is the demo's CPU-sized network with a random CLIP of its sizes (no
weights to download), 64-pixel crops of the native images and evaluation on 64-pixel windows of
the native image, so that the whole path runs on a laptop in minutes (nothing it learns comes
from a pretrained CLIP, so expect far less than a real run).
"""
from configs import base
from configs import demo


def folder_data(c):
  c.data.name = 'folder'
  c.data.root = ''
  c.data.split = ''
  c.data.num_classes = 0             # from classes.txt
  c.data.background_classes = ()     # from data.background_name
  return c


def get_config(arg: str = 'clip'):
  if arg == 'tiny':
    c = folder_data(demo.get_config())
    c.model.clip.pretrained = ''                  # a random CLIP of the demo's sizes
    c.model.relevance.mode = 'all'  # a random CLIP's relevance means nothing: no gating
    c.data.synthetic_labeled = c.data.synthetic_unlabeled = c.data.synthetic_val = 0
    c.train.steps = 300
    c.train.ckpt_every = 100
    c.inference.update(dict(protocol='zegclip_sliding_window', short_side=0, stride=0))
    del c.evals['zero_shot']
    return c
  if arg not in base.BACKBONE_ARGS:
    raise ValueError(
        f"config argument {arg!r}: expected 'tiny' or one of {sorted(base.BACKBONE_ARGS)}")
  c = folder_data(base.get_config())
  c.loss.supervised.max_masks = 64            # a user's images may hold many classes
  if base.BACKBONE_ARGS[arg] == 'eva02_clip_l14':
    base.use_eva02_clip_l14(c, base.EVA02_CROPS['voc'])
  return c
