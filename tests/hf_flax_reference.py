"""HF-Flax CLIP checkpoints written without `FlaxCLIPModel` (transformers 5 removed it)."""
import numpy as np


def hf_flax_params(model):
  """The HF-Flax parameter tree of a torch `CLIPModel`, by the rules of transformers' PyTorch ->
  Flax conversion (`rename_key_and_reshape_tensor` of transformers 4.x), decided here by each
  tensor's torch module type: LayerNorm weight -> scale, Embedding weight -> embedding, Conv2d
  weight -> kernel (H, W, in, out), Linear weight -> kernel (in, out); biases and bare parameters
  (class_embedding, logit_scale) keep their names. Buffers (position_ids) are not parameters."""
  import torch
  renames = {
      torch.nn.LayerNorm: ('scale', lambda w: w), torch.nn.Embedding: ('embedding', lambda w: w),
      torch.nn.Conv2d: ('kernel', lambda w: w.transpose(2, 3, 1, 0)),
      torch.nn.Linear: ('kernel', lambda w: w.T)
  }
  modules = dict(model.named_modules())
  tree = {}
  for name, tensor in model.named_parameters():
    path = name.split('.')
    value = tensor.detach().numpy()
    owner = modules['.'.join(path[:-1])] if len(path) > 1 else model
    if path[-1] == 'weight':
      leaf, reshape = renames[type(owner)]
      path, value = path[:-1] + [leaf], reshape(value)
    node = tree
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = np.array(value, order='C')   # (ascontiguousarray makes a scalar 1-D)
  return tree
