r"""Open vocabulary in the small world: the demo (trained on its first 5 classes), evaluated on all
9 of the world's classes, the 4 unseen ones (ring, checkered diamond, cross, star) named only at
inference.

  python -m hvl_jax.main --config configs/demo_open_vocabulary.py --workdir runs/demo_ov
  python -m hvl_jax.main --config configs/demo_open_vocabulary.py --workdir runs/demo --mode eval

Training is the demo's (configs/demo.py); at its end, and with --mode eval on any demo workdir,
eval_open_vocabulary.json reports the mIoU over the 9 names, over the seen and the unseen ones,
beside the closed-set network and the tiny CLIP's dense zero-shot on the same images.
"""
from configs import demo
from hvl_jax.data import synthetic


def get_config():
  c = demo.get_config()
  c.inference.class_names = synthetic.CLASS_NAMES
  c.evals.open_vocabulary.zero_shot = True     # the tiny CLIP alone on the names too
  return c
