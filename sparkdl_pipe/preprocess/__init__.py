"""Pure batch preprocessing (numpy / Pillow): no Spark, no TensorFlow.

Ingest and scoring both call these functions, so what a model sees at scoring time is exactly what
it saw in training.
"""
