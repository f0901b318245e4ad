"""Cluster mode: membership, replica, trust and the dmq message codec."""
