"""Tools for developing and testing polyai-sync; never imported by the product."""
