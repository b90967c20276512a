"""Image and text encoders: CLIP ViT and EVA02-CLIP towers, their weight loaders, the chooser."""
