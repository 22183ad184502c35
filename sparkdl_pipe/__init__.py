"""sparkdl_pipe: deep learning at data-lake scale on Apache Spark."""

from sparkdl_pipe import _env

_env.configure_process_env()

__version__ = "0.1.0"
