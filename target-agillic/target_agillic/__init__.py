"""target-agillic: keep Agillic recipients in sync with a warehouse."""
