"""cocoon.proxy: routes requests to attested workers, meters and bills them."""

from cocoon.proxy.config import ProxyConfig
from cocoon.proxy.service import Proxy

__all__ = ["Proxy", "ProxyConfig"]
