"""Files shipped with the package (model weights, label tables)."""
