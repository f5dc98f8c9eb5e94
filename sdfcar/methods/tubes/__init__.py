"""The tube tree: vessels traced as centrelines with radii (:mod:`~sdfcar.methods.tubes.tracing`)."""
