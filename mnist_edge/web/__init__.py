"""`mnist-edge web`: a static page that classifies a drawn digit in the browser."""
