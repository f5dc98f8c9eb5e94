"""Post-processing of a reconstruction's centrelines: 3D quantitative coronary analysis.

Pure functions over a small :class:`~sdfcar.analysis.tree.CentrelineTree` (vessels resampled
at 0.5 mm, with radii and their junctions):

* :mod:`sdfcar.analysis.tree` - the tree, built from the run record's centrelines;
* :mod:`sdfcar.analysis.qca` - per-vessel lengths, diameters, stenoses, lesion lengths,
  tortuosity, and per-junction bifurcation angles;
* :mod:`sdfcar.analysis.views` - foreshortening and overlap in a view, the working-view map;
* :mod:`sdfcar.analysis.summary` - all of it for one reconstruction (what the pipeline and
  ``sdfcar qca`` call).

The definitions are in ``docs/qca.md``. The files are written by :mod:`sdfcar.io.centrelines`.
"""
