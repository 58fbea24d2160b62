"""cuelab: which cues does my image classifier actually rely on?"""

__version__ = "0.1.0"
