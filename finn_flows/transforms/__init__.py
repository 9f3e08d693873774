"""Graph transformations used by the build steps, one per module."""
