"""The tiny configuration shared by the tests: random tiny CLIP, 64x64 input, 5 classes."""
from configs import demo

CLASS_NAMES = ('background', 'disk', 'square', 'triangle', 'stripes')


def tiny_config(**overrides):
  c = demo.get_config()
  c.model.clip.update(dict(vision_width=32, vision_layers=3, vision_heads=2, vision_mlp_dim=64,
                           text_width=32, text_layers=1, text_heads=2, text_mlp_dim=64,
                           projection_dim=32))
  c.model.out_layers = (1, 2, 3)
  c.model.hidden_dim = 32
  c.model.htqg.mlp_hidden = 32
  c.model.instance_queries = 4
  c.model.pixel_decoder.update(dict(layers=1, heads=2, points=2, ffn_dim=64))
  c.model.ptrm_heads = 2
  c.model.decoder.update(dict(layers=2, heads=2, ffn_dim=64))
  c.loss.num_points = 128
  c.loss.max_masks = 12
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split('.')
    for p in path:
      node = node[p]
    node[leaf] = value
  return c
