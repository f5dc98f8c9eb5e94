"""The SDF-CAR MONAI Label app: ``monailabel start_server --app <this folder> --studies DIR``.

``main.py`` is loaded by MONAI Label itself (it imports ``monailabel``); the reconstruction
and request handling live in :mod:`sdfcar.apps.monailabel.infer` and
:mod:`sdfcar.apps.monailabel.studies`.
"""
