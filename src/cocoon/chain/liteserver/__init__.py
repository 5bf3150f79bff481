"""``cocoon chain serve``: the embedded chain as a TON liteserver (ADNL over TCP, lite_api), with a
standard global config, so services in other processes and on other machines share one development
chain through the same LiteChain that talks to testnet and mainnet."""

from cocoon.chain.liteserver.adnl import AdnlError, ServerKey
from cocoon.chain.liteserver.globalconfig import global_config, write_global_config
from cocoon.chain.liteserver.server import DevLiteServer
from cocoon.chain.liteserver.tl import DEV_CHAIN_CAPABILITY

__all__ = [
    "DEV_CHAIN_CAPABILITY",
    "AdnlError",
    "DevLiteServer",
    "ServerKey",
    "global_config",
    "write_global_config",
]
