"""spark-submit entry: `spark-submit jobs/ingest_images.py --help` lists the options (same as `sparkdl-pipe ingest-images`)."""

import sys

from sparkdl_pipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest-images", *sys.argv[1:]]))
