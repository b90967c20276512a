"""TensorBoard event files: tensorboardX's `SummaryWriter`, imported without torch.

tensorboardX imports torch where it is installed, only to accept torch tensors. This project
writes numpy arrays, and that import took 2 of the 4 seconds a start spends importing (the test
requirements install torch).
"""
import sys

__all__ = ['SummaryWriter']

_TORCH_UNLOADED = 'torch' not in sys.modules
if _TORCH_UNLOADED:
  sys.modules['torch'] = None    # `import torch` raises ImportError while tensorboardX loads
try:
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top,unused-import
finally:
  if _TORCH_UNLOADED:
    del sys.modules['torch']     # a later `import torch` loads it as usual
