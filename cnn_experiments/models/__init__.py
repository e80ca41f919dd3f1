"""The networks: the CNN bodies and heads, the pooling layers, the pretrained body, kernels and activation maps."""
