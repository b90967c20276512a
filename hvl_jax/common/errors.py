"""Errors a user can fix, each raised with a message that names the file or field."""


class CheckpointError(ValueError):
  """A checkpoint (a training run's, or a pretrained model's weights) that is missing or cannot be
  read; the message names the file or directory and the problem."""


class DataError(ValueError):
  """Bad dataset input (a missing, unreadable or malformed image, label or list); the message
  names the file and what is wrong, and how to fix it where there is one fix."""


class StorageError(OSError):
  """A store (a bucket) that does not answer or refuses a write; the message names the URL. What
  was written before stays (a checkpoint being uploaded is never taken as the newest)."""
