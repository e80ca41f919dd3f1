import sys

from cnn_experiments.cli import main

sys.exit(main(["run", "pooling", *sys.argv[1:]]))
