"""Ray Train loops for stage 1 (matting network) and stage 2 (refiner), with MLflow tracking.

Import :func:`dugray.train.launch.run_training` to train from Python; ``jobs/train.py``
is the command line.
"""
