"""Dataset readers for the distributed layouts, preprocessing, and synthetic generators."""
