"""`mnist-edge train` and `mnist-edge eval`."""
