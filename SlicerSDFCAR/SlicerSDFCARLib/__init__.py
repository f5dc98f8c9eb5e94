"""Pure-Python helpers of the SlicerSDFCAR module (no Slicer, Qt or VTK import).

``geometry``        view settings as objects of the geometry contract
``validation``      live checks of the two views (errors block Apply, warnings inform;
                    the angle between them from the engine's geometry)
``dicom``           C-arm geometry of an XA file, read by ``sdfcar xa-geometry``
``command``         the ``sdfcar reconstruct`` command line and ``--set`` overrides
``process``         a background process whose output lines a GUI timer can poll
``process_output``  progress lines, log and the one-line error of a failed run
``case_folder``     the run folder and the case folder written from the selected images
``requirements``    which Python packages are missing and how to install them
``results``         the reconstruction outputs imported into an MRML scene (MRML API only)
``xa_input``        raw XA runs: the engine's command, the edited geometry fields, frames

Everything here runs in plain Python, so it is tested outside Slicer (``tests/``).
"""
