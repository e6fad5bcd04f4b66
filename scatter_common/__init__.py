"""What every scatter/gather process shares: serving (health, reflection,
drain on SIGTERM), addresses, payload packing and the event loop.

The root and both SDKs build on this package; it never imports any of them.
"""
