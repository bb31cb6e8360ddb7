"""target-gladly: keep Gladly customer profiles in sync with a warehouse."""
