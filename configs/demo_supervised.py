r"""Demo without unlabeled images: same model and budget as configs/demo.py, labeled data only.

  python -m hvl_jax.main --config configs/demo_supervised.py --workdir runs/demo_supervised
"""
from configs import demo


def get_config():
  c = demo.get_config()
  c.data.unlabeled_batch = 0
  return c
