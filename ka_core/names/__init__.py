"""Host-name destinations: the names machine (targets and derived states), the
re-resolution schedule, the resolution logic and the DNS wire format."""
