"""spark-submit entry: `spark-submit jobs/train.py --help` lists the options (same as `sparkdl-pipe train`)."""

import sys

from sparkdl_pipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
