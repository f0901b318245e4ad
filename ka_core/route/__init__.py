"""Routing with ka-kemi's health: selection among a group's live destinations."""
