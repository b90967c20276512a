"""Shared fixtures: tiny random HF CLIP checkpoints written by the tests themselves."""
import atexit
import json
import os
import shutil
import string
import tempfile

import numpy as np
import pytest

from hf_flax_reference import hf_flax_params

# Tests run on 2 simulated CPU devices; must be set before jax is imported.
# The suite compiles many small programs and runs each a few times: XLA's CPU backend without its
# expensive LLVM passes compiles them faster. The two simulated devices meet in collectives
# within 40 s by default, which a device thread slowed by the other test worker's compiles on 2
# cores may miss (XLA then aborts the process): the tests allow 2 minutes (a hung collective
# fails after that, see tests/test_cli.py).
os.environ.setdefault(
    'XLA_FLAGS', '--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 '
    '--xla_llvm_disable_expensive_passes=true '
    '--xla_cpu_collective_call_terminate_timeout_seconds=120')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# gcsfs reads this when imported: without it, a file system first asks the bucket's layout over
# gRPC, which the tests' GCS emulator (tests/gcs_emulator.py) does not serve.
os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
# The RBG generator compiles parameter initialisation ~2x faster on CPU than threefry;
# no test depends on particular random values.
os.environ.setdefault('JAX_DEFAULT_PRNG_IMPL', 'rbg')
# One persistent compilation cache for the session, shared by the xdist workers and the CLI
# subprocesses (set here, in the controller, before they start): programs that several tests
# compile, e.g. a resumed run's train step, are compiled once. Programs of any compile time are
# kept: the evaluation's and initialisation's small ones, which every command-line run compiles
# again, are a sixth of a cached tiny training run's time.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='hvl_jax_test_jit_cache_')
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


def write_tiny_tokenizer(path):
  """A character-level CLIP BPE vocabulary (no merges); EOS gets the largest id."""
  chars = list(string.ascii_lowercase) + ['.', ',']
  tokens = ['<|startoftext|>'] + chars + [c + '</w>' for c in chars] + ['<|endoftext|>']
  with open(os.path.join(path, 'vocab.json'), 'w') as f:
    json.dump({t: i for i, t in enumerate(tokens)}, f)
  with open(os.path.join(path, 'merges.txt'), 'w') as f:
    f.write('#version: 0.2\n')
  return len(tokens)


def tiny_hf_config(vocab_size):
  from transformers import CLIPConfig
  return CLIPConfig(
      text_config=dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=48, max_position_embeddings=16,
                       bos_token_id=0, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1),
      vision_config=dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=48, image_size=32, patch_size=8),
      projection_dim=24)


@pytest.fixture(scope='session')
def hf_flax_checkpoint(hf_torch_checkpoint, tmp_path_factory):
  """(directory, torch CLIPModel): the torch model's weights as an HF-Flax `flax_model.msgpack`
  (what `FlaxCLIPModel.save_pretrained` wrote) with its config and tokenizer."""
  import flax
  torch_path, model = hf_torch_checkpoint
  path = str(tmp_path_factory.mktemp('clip_flax'))
  for name in ('config.json', 'vocab.json', 'merges.txt'):
    shutil.copy(os.path.join(torch_path, name), path)
  with open(os.path.join(path, 'flax_model.msgpack'), 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(hf_flax_params(model)))
  return path, model


@pytest.fixture(scope='session')
def hf_torch_checkpoint(tmp_path_factory):
  """(directory, torch CLIPModel) saved as PyTorch-named model.safetensors."""
  import torch
  from transformers import CLIPModel
  torch.manual_seed(0)
  path = str(tmp_path_factory.mktemp('clip_torch'))
  vocab = write_tiny_tokenizer(path)
  model = CLIPModel(tiny_hf_config(vocab)).eval()
  model.save_pretrained(path, safe_serialization=True)
  return path, model


@pytest.fixture
def rng():
  return np.random.RandomState(0)


# The test files that take longest on 2 cores, run first: the two workers take whole files in
# collection order (`--dist loadfile --no-loadscope-reorder`, pytest.ini; xdist's own order puts
# the files with the most tests first), and a long file taken last keeps one worker busy alone.
LONGEST_FIRST = ('test_objective.py', 'test_bucket_runs.py', 'test_train.py', 'test_cli.py',
                 'test_your_own_data.py', 'test_hvl.py', 'test_pixel_decoder.py', 'test_app.py',
                 'test_benchmarks.py')


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))    # stable: files keep order
