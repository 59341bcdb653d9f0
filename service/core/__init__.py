"""The process itself: settings, logs, Prometheus metrics, the domain error tree, lifecycle, the uvicorn server.

Every other room may import this one; it imports none of them, and no torch.
"""
