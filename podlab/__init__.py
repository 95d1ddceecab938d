"""podlab: a Terway-style cloud-native pod network, end to end on one Linux machine."""

__version__ = "0.1.0"
