"""MONAI Label: two-view requests against a studies folder, and the app that serves them.

The plain modules here (:mod:`~sdfcar.apps.monailabel.studies`,
:mod:`~sdfcar.apps.monailabel.infer`) import nothing beyond the engine's own dependencies;
``app`` is the MONAI Label app built on them and is the only place that
imports ``monailabel`` (install it with ``pip install sdfcar[monailabel]``).
"""
