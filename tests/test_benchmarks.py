"""The profile summary attributes traced device time to the network's components."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks import profile_summary


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dense(256, name='backbone')(x)
    return nn.Dense(256, name='decoder')(jnp.tanh(x))


def test_profile_summary_by_component(tmp_path):
  net = Net()
  params = net.init(jax.random.PRNGKey(0), jnp.ones((1, 256)))
  step = jax.jit(jax.grad(lambda p, x: jnp.sum(net.apply(p, x) ** 2)))
  x = jnp.ones((512, 256))
  compiled = step.lower(params, x).compile()
  jax.block_until_ready(step(params, x))
  with jax.profiler.trace(str(tmp_path), create_perfetto_trace=True):
    jax.block_until_ready(step(params, x))
  paths = profile_summary.op_paths(compiled.as_text())
  assert any('/backbone/' in p for p in paths.values()) and any('/decoder/' in p for p in paths.values())
  text = profile_summary.summarize(str(tmp_path), compiled.as_text(), steps=1)
  lines = {l.split('  ')[1].strip(): l for l in text.splitlines()[1:] if l.startswith('  ') and ' ms ' in l
           and '%' in l}
  assert 'backbone E_I' in lines and 'DQTD' in lines, text
  assert '(backward' in lines['backbone E_I']
