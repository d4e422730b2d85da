"""asymptote: turn a fixed pile of text into the best language model that compute can buy."""

__version__ = "0.1.0"
