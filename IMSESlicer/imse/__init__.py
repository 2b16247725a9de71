"""IMSE backend."""
