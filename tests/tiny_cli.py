"""Tiny config for the command-line tests (kill -9 and resume, eval, predict): supervised, two
micro-steps of 2 labeled images per optimizer step, 4-image eval."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tiny import tiny_config  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config():
  c = tiny_config()
  c.data.unlabeled_batch = 0
  c.data.synthetic_val = 4
  c.loss.vision_language.weight = 0.0
  c.train.grad_accum = 2
  c.train.ckpt_every = 2
  c.train.log_every = 2
  return c
