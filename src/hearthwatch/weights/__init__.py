"""The default models' pretrained weights: which packages ship them, and their install."""
