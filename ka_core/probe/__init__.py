"""Probing: the prober, its schedule, the health policy and the OPTIONS wire format."""
