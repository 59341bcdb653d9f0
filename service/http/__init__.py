"""The HTTP edge: app factory, one router per resource, dependencies, auth, body reading, the request context,
the request's parameters turned into a plan, the answers built from the engine's results, the runtime the
routes share (workers, CPU pool, job store), the job runs, the exact OpenAPI contract, the page.

It never imports torch: the device is the engine's alone.
"""
