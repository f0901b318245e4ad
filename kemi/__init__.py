"""ka-kemi glue: what Kamailio's app_python3 loads.  See README.md for the script API."""
