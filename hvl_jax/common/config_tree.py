"""Config subtrees and the frozen dataclasses that hold their defaults.

Each component's config dataclass is the one source of its fields and defaults: configs/base.py
makes its ConfigDict subtree with `to_tree`, and the component is built from that subtree with
`build` (nested dataclasses are nested subtrees; the field names are the subtree's keys). A field
made with `derived()` is not a setting: the builder of the component fills it in (e.g. the
criterion's class count, from the network), and it is not in the tree.
"""
import dataclasses
from typing import Any, Type, TypeVar

import ml_collections

T = TypeVar('T')


def derived(default: Any = None):
  """A dataclass field that is not in the config tree (its owner fills it in)."""
  return dataclasses.field(default=default, metadata={'config': False})


def settings(cls_or_instance) -> list:
  """The fields of a config dataclass that the config tree holds."""
  return [f for f in dataclasses.fields(cls_or_instance) if f.metadata.get('config', True)]


def to_tree(instance) -> ml_collections.ConfigDict:
  """The ConfigDict of a config dataclass instance: its settings, nested dataclasses as subtrees."""
  tree = {}
  for f in settings(instance):
    value = getattr(instance, f.name)
    tree[f.name] = to_tree(value) if dataclasses.is_dataclass(value) else value
  return ml_collections.ConfigDict(tree)


def _plain(value):
  """Lists (a config read back from JSON) as tuples, the dataclasses' type for sequences."""
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  return value


def build(cls: Type[T], tree, path: str, **derived_values) -> T:
  """`cls` from its config subtree `tree` (a ConfigDict or mapping) named `path` in messages.

  A key the dataclass does not have is an error naming it; a missing key keeps the default (a
  nested dataclass's default instance, updated by its subtree); `derived_values` fill the fields
  that are not settings.
  """
  return cls(**_fields(cls, tree, path), **derived_values)


def _fields(cls, tree, path: str) -> dict:
  tree = dict(tree.items()) if hasattr(tree, 'items') else dict(tree)
  fields = {f.name: f for f in settings(cls)}
  unknown = sorted(set(tree) - set(fields))
  if unknown:
    raise ValueError(f'{path}.{unknown[0]}: no such config field (the fields of {path} are '
                     f'{", ".join(fields)})')
  out = {}
  for name, value in tree.items():
    default = _default(fields[name])
    if dataclasses.is_dataclass(default):
      out[name] = dataclasses.replace(default, **_fields(type(default), value, f'{path}.{name}'))
    else:
      out[name] = _plain(value)
  return out


def _default(f: dataclasses.Field):
  if f.default is not dataclasses.MISSING:
    return f.default
  if f.default_factory is not dataclasses.MISSING:
    return f.default_factory()
  return None
