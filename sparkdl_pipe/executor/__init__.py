"""Code that runs inside Spark tasks. Module level imports only light things (stdlib, numpy,
pandas, pyarrow); TensorFlow and Horovod are imported inside the functions that need them."""
