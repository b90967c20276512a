"""What evaluates and infers, importing nothing of training: the sliding-window predictor, the
mIoU evaluator, open-vocabulary inference, the Segmenter, prediction on files and overlays."""
