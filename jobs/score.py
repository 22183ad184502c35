"""spark-submit entry: `spark-submit jobs/score.py --help` lists the options (same as `sparkdl-pipe score`)."""

import sys

from sparkdl_pipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
