"""Training one run with fastai: on tensors, on an image folder, or several fused into one model."""
