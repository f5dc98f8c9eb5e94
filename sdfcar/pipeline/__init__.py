"""One pipeline for every front end: inputs -> method -> post-processing -> outputs."""
