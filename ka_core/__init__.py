"""ka-kemi core: pure Python, no Kamailio import; time and I/O are passed in."""
