"""What training and inference share: the train state and its checkpoints, the workdir's config
file, file writes, the device mesh, the compilation cache, the ignore label and the errors."""
