"""`python -m service`: serve the configured models with uvicorn (settings from EXPLAIN_* variables)."""

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, timeout_keep_alive=65)


if __name__ == "__main__":
    main()
