"""Adapters that expose the engine to other tools.

The plain modules here (:mod:`~sdfcar.integrations.studies`,
:mod:`~sdfcar.integrations.infer`) import nothing beyond the engine's own dependencies;
``monailabel_app`` is the MONAI Label app built on them and is the only place that
imports ``monailabel`` (install it with ``pip install sdfcar[monailabel]``).
"""
