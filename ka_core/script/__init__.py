"""What a script sees: its arguments, its callbacks and events, the texts it logs."""
