"""spark-submit entry: `spark-submit jobs/ingest_text.py --help` lists the options (same as `sparkdl-pipe ingest-text`)."""

import sys

from sparkdl_pipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest-text", *sys.argv[1:]]))
