"""The shared table: slot layout and codec, chains, the ring, adds and deletes."""
