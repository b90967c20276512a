"""What trains: the trainer (`train_and_evaluate`), the per-step objective, the optimizer and
preemption handling."""
