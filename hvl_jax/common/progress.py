"""Rate and ETA of a loop, for the console lines of training and evaluation."""
import time


class Rate:
  """Items per second counted from the first `mark` (which may hold a compilation), and the ETA.

  rate = Rate(total); rate.mark(done) at each update; rate.per_second(done), rate.eta(done).
  """

  def __init__(self, total: int):
    self.total = total
    self.started = time.time()
    self.start = None       # (done, time) of the first mark

  def mark(self, done: int) -> None:
    if self.start is None:
      self.start = (done, time.time())

  def per_second(self, done: int) -> float:
    """nan until a later mark than the first."""
    if self.start is None or done <= self.start[0]:
      return float('nan')
    return (done - self.start[0]) / max(time.time() - self.start[1], 1e-9)

  def eta(self, done: int) -> str:
    """'HH:MM:SS' to the total at the current rate; '--:--:--' while there is none."""
    rate = self.per_second(done)
    if not rate > 0:
      return '--:--:--'
    return time.strftime('%H:%M:%S', time.gmtime((self.total - done) / rate))
