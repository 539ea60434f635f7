"""poetgen: a character-level generator of classical Chinese poetry.

Importing the package is cheap: TensorFlow is loaded only by the stages that need it.
"""

__version__ = "0.1.0"
