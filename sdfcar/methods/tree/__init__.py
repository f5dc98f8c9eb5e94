"""The hybrid SDF tube tree: a traced tree refined globally (:mod:`.method`)."""
