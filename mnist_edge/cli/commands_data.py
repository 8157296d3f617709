"""`mnist-edge data show|stats`."""
