"""Reconstruction methods, each a peer behind one interface (:mod:`sdfcar.methods.base`)."""
