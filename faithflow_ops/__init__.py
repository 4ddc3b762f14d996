"""FaithFlow Ops: the operations toolkit behind the FaithFlow church platform."""

__version__ = "0.1.0"
