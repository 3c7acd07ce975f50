"""Finishing a clip after it is decoded: frame interpolation (and upscaling), working on uint8 frames."""
