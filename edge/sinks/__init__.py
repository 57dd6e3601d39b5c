"""Preview sinks for the kiosk's screen: window (X11/Wayland), fbdev, file, none.

Each is imported only where it is chosen (the wiring), so a headless kiosk
never loads a GUI toolkit.
"""
from edge.sinks.base import NoneSink, Sink

__all__ = ["NoneSink", "Sink"]
