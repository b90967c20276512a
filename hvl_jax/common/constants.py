"""Values shared by the data, the losses and the metrics."""

# The label value of pixels without a class (borders, "void"): no loss, no score.
IGNORE_INDEX = 255
