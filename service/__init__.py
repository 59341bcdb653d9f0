"""The FastAPI explanation service: settings, routes, errors, the batcher and worker, methods, codecs."""
