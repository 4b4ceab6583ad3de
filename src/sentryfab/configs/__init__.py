"""Configuration files: which files each role has, their variables, rendering them."""
