import os

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ["CNN_EXP_PROGRESS"] = "0"  # no progress bars in tests


@pytest.fixture(scope="session")
def digits():
    from cnn_experiments.data import mnist_embedded
    return mnist_embedded()
