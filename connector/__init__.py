"""A self-hosted, bidirectional Segment connector in the style of Hull."""

__version__ = "0.1.0"
