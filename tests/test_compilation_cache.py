"""The persistent compilation cache in fresh interpreters: a second start loads what the first
compiled, and says so; HVL_COMPILATION_CACHE=off compiles every time and writes nothing."""
import os
import subprocess
import sys

# A start as the programs make it: the cache on (hvl_jax.common.compilation_cache.enable), a jitted
# function compiled through trainer.compiled. JAX caches only compiles of at least 1 s by default;
# this one is quicker, so the threshold is 0 here.
START = """
import jax, jax.numpy as jnp
from hvl_jax.common import compilation_cache
from hvl_jax.training import trainer
print('cache', compilation_cache.enable())
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
trainer.compiled(jax.jit(lambda x: jnp.tanh(x) @ x.T), jnp.ones((32, 32)), what='the program')
"""


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(cache: str, home) -> str:
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  env.update(HVL_COMPILATION_CACHE=cache, HOME=str(home), PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', START], env=env, cwd=home, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout


def entries(directory) -> int:
  return sum(len(files) for _, _, files in os.walk(directory))


def test_a_second_start_loads_what_the_first_compiled(tmp_path):
  cache = tmp_path / 'cache'
  first = start(str(cache), tmp_path)
  assert f'cache {cache}' in first and 'Compiled the program in' in first
  written = entries(cache)
  assert written >= 1
  second = start(str(cache), tmp_path)
  assert 'Loaded the program from the compilation cache in' in second
  assert entries(cache) == written            # nothing compiled, nothing added


def test_off_compiles_every_time_and_writes_nothing(tmp_path):
  for _ in range(2):
    out = start('off', tmp_path)
    assert 'cache None' in out and 'Compiled the program in' in out
  assert entries(tmp_path) == 0        # not even in the default ~/.cache/hvl_jax/jax
