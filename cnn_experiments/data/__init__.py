"""The data: the embedded MNIST digits and the scenes drawn from them."""
