"""Config fields that moved or were removed: an override naming one ends with a line that says
where it went (`configs.base.with_overrides`, the command line of `hvl_jax.main`)."""
from typing import Optional, Sequence

# Fields that moved into the subtree of the module that reads them: old name -> new name.
MOVED = {
    'model.ptrm': 'model.pixel_decoder.ptrm',
    'model.instance_queries': 'model.decoder.instance_queries',
    'model.query_refinement': 'model.decoder.query_refinement',
    'relevance': 'model.relevance',
    'relevance.mode': 'model.relevance.mode',
    'relevance.gating': 'model.relevance.gating',
    'relevance.threshold': 'model.relevance.threshold',
    'model.remat_backbone': "model.remat.backbone (a policy, or 'none')",
    'model.remat_pixel_decoder': "model.remat.pixel_decoder (a policy, or 'none')",
    'model.remat_decoder': "model.remat.decoder (a policy, or 'none')",
    'model.remat_policy.backbone': 'model.remat.backbone',
    'model.remat_policy.pixel_decoder': 'model.remat.pixel_decoder',
    'model.remat_policy.decoder': 'model.remat.decoder',
    'model.remat_policy': 'model.remat',
    'model.feature_dropout': 'semi.feature_dropout',
}
REMOVED = {
    'semi.weak_view_forward_only': "the weak view's decoder pass always runs apart, forward only",
}


def old_field_message(field: str) -> Optional[str]:
  """One line for a field that moved or was removed; None for any other."""
  if field in MOVED:
    return f'config field {field!r} is now {MOVED[field]}'
  if field in REMOVED:
    return f'config field {field!r} no longer exists: {REMOVED[field]}'
  return None


def old_fields_in_argv(argv: Sequence[str]) -> Optional[str]:
  """The message for the first `--config.<old field>=...` argument, None if there is none."""
  for arg in argv:
    if arg.startswith('--config.'):
      message = old_field_message(arg[len('--config.'):].split('=', 1)[0])
      if message:
        return message
  return None
