"""SDF-CAR: two-view coronary artery reconstruction with a hybrid SDF-occupancy field."""

__version__ = "0.1.0"
