"""Recipes: end-to-end scripts over the public API (``diffence demo``, ``diffence reproduce``); none imports another."""
