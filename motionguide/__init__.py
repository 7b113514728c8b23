"""motionguide: MoG-style motion guidance for diffusers video transformers."""
__version__ = "0.1.0"
