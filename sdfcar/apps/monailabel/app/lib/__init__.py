"""Tasks of the SDF-CAR MONAI Label app."""
