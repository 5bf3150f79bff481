"""cocoon.client: the app developer's local OpenAI-compatible endpoint."""

from cocoon.client.config import ClientConfig
from cocoon.client.sdk import connect, connect_async
from cocoon.client.service import Client

__all__ = ["Client", "ClientConfig", "connect", "connect_async"]
