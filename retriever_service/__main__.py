"""`python -m retriever_service`: serve the retriever with uvicorn on the configured host and port."""

import logging

import uvicorn

from retriever_service.app import create_app
from retriever_service.settings import RetrieverSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = RetrieverSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
