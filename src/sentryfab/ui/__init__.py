"""The only package that prints: rich tables and blocks on stdout, progress on stderr."""
