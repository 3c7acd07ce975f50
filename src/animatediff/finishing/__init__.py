"""Finishing passes on made clips: frame interpolation and upscaling."""
