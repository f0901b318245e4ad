"""Host-name destinations: resolution logic and the DNS wire format."""
