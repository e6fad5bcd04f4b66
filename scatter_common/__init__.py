"""What every scatter/gather process shares: serving (health, reflection,
drain on SIGTERM), addresses, payload packing, the event loop, and the one
table of what each gRPC status code means (``status``).

The root and both SDKs build on this package; it never imports any of them.
"""
