"""The explanation service, in rooms that import downward only (`lint-imports` checks it, see pyproject.toml):

    __main__        `python -m service`: settings, logs, the app, the server
    http/           the HTTP edge: app factory, routes, auth, bodies, parameters, answers, the page; no torch
    jobs/           the job store: status, progress, results and owners of long work
    engine/         the per-model worker (the only code on the device), scheduling, batching, the shared passes
    visualization/  feature visualization: activation maximization, feature maps, filters
    metrics/        scores of an explanation (faithfulness)
    methods/        one file per explanation method, the pass runner they yield to, and their rules
    imaging/        images in and out: decode, overlays, colormaps, encoders (numpy and Pillow, no torch)
    core/           the process: settings, logs, Prometheus metrics, the domain errors, lifecycle, server

A request flows down: http -> engine (queue, batch, passes) -> methods -> back up as an answer.
"""
