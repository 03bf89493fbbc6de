"""`python -m generator_service`: serve the generator with uvicorn on the configured host and port."""

import logging

import uvicorn

from generator_service.app import create_app
from generator_service.settings import GeneratorSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = GeneratorSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
