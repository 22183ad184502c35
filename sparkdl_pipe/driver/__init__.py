"""The only code that holds a SparkSession: run_ingest_images, run_training, run_scoring."""
