"""Front ends over the pipeline: command line, Ray batches, MONAI bundle, MONAI Label."""
