"""HTQG: the Hierarchical Textual Query Generator.

Learnable prompt vectors p1..p8 (CoOp) are placed after [SOS] in
`[SOS] p1..p8 class-name-tokens . [EOS]` and encoded by the frozen CLIP text
encoder (gradients reach the prompt through it); L level MLPs turn each class
embedding t_k into hierarchical queries q_k^(l); Phi is the 2-layer prompt
generator of L_anchor. Relevance gating (s_k * q_k^(l)) happens in hvl.py.
"""
import dataclasses
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from hvl_jax.models.zero_shot import DEFAULT_TEMPLATE
from hvl_jax.ops.sampling import l2_normalize


@dataclasses.dataclass(frozen=True)
class HTQGConfig:
  """`model.htqg`: levels L (3, one per deformable-attention scale), level-MLP hidden width (256),
  learnable prompt tokens n (8)."""
  levels: int = 3
  mlp_hidden: int = 256
  prompt_tokens: int = 8

  def __post_init__(self):
    if self.levels < 1 or self.prompt_tokens < 0:
      raise ValueError(
          f'model.htqg: levels must be >= 1 and prompt_tokens >= 0, got {self.levels}, '
          f'{self.prompt_tokens}')


def prompt_layout(tokenizer, class_names: Sequence[str], num_prompt_tokens: int,
                  context_length: int) -> Tuple[np.ndarray, np.ndarray]:
  """Token ids of `[SOS] X*n name . [EOS]` per class, with X = placeholder 0.

  Returns ids (K, T) int32 and the EOS position (K,) int32.
  """
  ids = np.zeros((len(class_names), context_length), np.int32)
  eos = np.zeros((len(class_names),), np.int32)
  room = context_length - 2 - num_prompt_tokens
  for k, name in enumerate(class_names):
    words = list(tokenizer.word_ids(f'{name}.'))
    if len(words) > room:
      raise ValueError(f'class name {name!r} needs {len(words)} tokens, only {room} fit after '
                       f'{num_prompt_tokens} prompt tokens in a context of {context_length}')
    seq = [tokenizer.sos_id] + [0] * num_prompt_tokens + words + [tokenizer.eos_id]
    ids[k, :len(seq)] = seq
    eos[k] = len(seq) - 1
  return ids, eos


def trim_to_longest(ids: np.ndarray, pooled: np.ndarray, multiple: int = 8) -> np.ndarray:
  """ids (K, T) cut after the longest sequence's pooled token, rounded up to `multiple`.

  The text encoder's attention is causal and its position embeddings absolute, so the pooled
  (EOS) output does not depend on the padding after it: the cut changes no embedding, and the
  encoder runs over ~16 tokens per class instead of CLIP's 77.
  """
  length = min(ids.shape[1], -(-(int(pooled.max()) + 1) // multiple) * multiple)
  return ids[:, :length]


def template_layout(tokenizer, class_names: Sequence[str], template: str = DEFAULT_TEMPLATE):
  """Token ids (K, T) of the fixed template per class (t^CLIP)."""
  return np.asarray(tokenizer([template.format(n) for n in class_names]), np.int32)


class MLP(nn.Module):
  """Linear -> ReLU -> Linear."""
  hidden: int
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x))
    return nn.Dense(self.out, dtype=self.dtype, name='fc2')(x)


class HTQG(nn.Module):
  """Prompt vectors, level MLPs and Phi.

  Attributes:
    text_width: width of the text token embeddings.
    embed_dim: CLIP joint embedding width E.
    dim: query width D (256).
    config: levels L, level-MLP width, prompt tokens n (`HTQGConfig`).
  """
  text_width: int
  embed_dim: int
  dim: int = 256
  config: HTQGConfig = HTQGConfig()
  dtype: Any = jnp.float32

  def setup(self):
    cfg = self.config
    self.prompt = self.param('prompt', nn.initializers.normal(0.02),
                             (cfg.prompt_tokens, self.text_width))
    self.level_mlps = [
        MLP(hidden=cfg.mlp_hidden, out=self.dim, dtype=self.dtype, name=f'level_mlp_{l}')
        for l in range(cfg.levels)
    ]
    self.phi = MLP(hidden=self.embed_dim, out=self.embed_dim, dtype=self.dtype, name='phi')

  def insert_prompt(self, token_embeds):
    """(K, T, W) token embeddings of `prompt_layout` ids -> prompt vectors at positions 1..n."""
    k = token_embeds.shape[0]
    prompt = jnp.broadcast_to(self.prompt.astype(token_embeds.dtype), (k,) + self.prompt.shape)
    return token_embeds.at[:, 1:1 + self.config.prompt_tokens].set(prompt)

  def __call__(self, t):
    """t (K, E) learned-prompt text embeddings -> dict(level_queries (L, K, D), t_hat, phi (K,
    E))."""
    t_hat = l2_normalize(t.astype(jnp.float32))
    queries = jnp.stack([mlp(t) for mlp in self.level_mlps], axis=0)
    return dict(level_queries=queries, t_hat=t_hat, phi=self.phi(t_hat).astype(jnp.float32))
