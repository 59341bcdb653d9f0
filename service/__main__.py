"""`python -m service`: serve the configured models with uvicorn (settings from EXPLAIN_* variables)."""

import sys

import service.core.openmp  # noqa: F401  (first: sets OpenMP's spin before torch is imported)
from service.core.logs import configure_logging
from service.core.server import serve
from service.core.settings import Settings
from service.http.app import create_app


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    return serve(create_app(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
