import os

import matplotlib
import pytest
import torch

from cnn_experiments.runs.config import Config

matplotlib.use("Agg")
os.environ["CNN_EXP_PROGRESS"] = "0"  # no progress bars in tests
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # the workers share the cores: one thread each, as a sweep's runs compute

TINY = Config(data="mnist", n_train=256, epochs=2, bs=32, lr=0.03)  # a run of about a fifth of a second
TINY_SCENES = Config(data="scenes", arch="pooled_cnn", canvas=32, channels=(4, 8), obj_size=8, n_scenes=128,
                     epochs=1, bs=32, lr=1e-2)


@pytest.fixture(scope="session")
def digits():
    from cnn_experiments.data.mnist import mnist_embedded
    return mnist_embedded()
