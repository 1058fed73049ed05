"""Camera sources and frame encodings (OpenCV is imported only inside this package)."""
