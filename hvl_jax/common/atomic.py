"""Files written whole or not at all: the bytes go to a temporary beside the target, which is
renamed onto it (atomic on POSIX), so a reader never sees a half-written file and an interrupted
write leaves the old one in place."""
import os


def write_bytes(path: str, data: bytes):
  """Writes `data` to `path` atomically (the temporary is per process: several may race)."""
  partial = f'{path}.partial-{os.getpid()}'
  with open(partial, 'wb') as f:
    f.write(data)
  os.replace(partial, path)
