"""target-gladly: placeholder until the Gladly issue lands."""
