"""Labelled test images and the scoring that checks a detector's boxes against them."""
