"""Timing and memory helpers shared by the benchmarks."""
import time

import jax
import numpy as np


def device_name() -> str:
  d = jax.devices()[0]
  return f'{d.platform}:{getattr(d, "device_kind", "?")} x{jax.device_count()}'


def time_fn(fn, *args, warmup: int = 2, iters: int = 10) -> float:
  """Median wall time (s) of a jitted `fn(*args)` after warm-up."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def compiled_memory_bytes(fn, *args) -> int:
  """Peak device memory XLA plans for one call of `fn(*args)` (see `planned_bytes`)."""
  return planned_bytes(jax.jit(fn).lower(*args).compile())


def planned_bytes(compiled) -> int:
  """Arguments + outputs + temporaries - aliased of a compiled function (-1 where not reported)."""
  m = compiled.memory_analysis()
  if m is None:
    return -1
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def gib(n: int) -> str:
  return f'{n / 2**30:.2f} GiB' if n >= 0 else 'n/a'
